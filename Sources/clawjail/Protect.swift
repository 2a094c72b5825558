import ArgumentParser
import ClawjailCore
import ClawjailOperator
import ClawjailRuntime

struct ProtectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protect",
        abstract: "Snapshot, compare and restore an agent's protected memory and skill files.",
        discussion: """
        The paths in an agent's [protect] paths (SOUL.md, AGENTS.md, MEMORY.md, skills/, \
        ...) are read-only inside its jail and its tool runs, and the hash of each file \
        is recorded at every run start. The operator changes them on the host; these \
        commands keep known-good copies outside every jail, in \
        <state dir>/snapshots/NAME/ID/ (0700), with their hashes in the state database.

        Typical use:
          clawjail protect snapshot alice     after reviewing a change
          clawjail protect diff alice         what changed since (exit 1 when something did)
          clawjail protect restore alice      put the last snapshot back (agent stopped)
          clawjail protect list alice
        """,
        subcommands: [Snapshot.self, Diff.self, Restore.self, List.self])

    struct Snapshot: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the agent's protected files and record their hashes.",
            discussion: """
            Regular files under the protected paths are copied (symlinks and special files \
            are skipped and named). The newest --keep snapshots are kept; older ones are \
            deleted. Recorded in the audit log as protect.snapshot.
            """)
        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("How many snapshots of this agent to keep (default 10).", valueName: "N"))
        var keep: Int = Protect.defaultKeep
        @Flag(help: "Print one JSON object.") var json = false
        @Argument(help: ArgumentHelp("The agent.", valueName: "NAME")) var name: String

        func validate() throws {
            if keep < 1 || keep > 1000 { throw ValidationError("--keep must be between 1 and 1000") }
        }

        func run() throws {
            try runOrExit {
                let r = try Protect.snapshot(name, keep: keep, layout: global.layout)
                OperatorText.out(json ? OperatorText.json(Protect.snapshotJSON(r)) : Protect.renderSnapshot(r))
                return 0
            }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what changed in the protected files since a snapshot.",
            discussion: """
            Files added, removed and changed against the latest snapshot (or --snapshot ID), \
            with a unified diff for small text files. Nothing is followed through a \
            symlink; a protected path that became a symlink is reported as such.

            Exit status 0 when nothing changed, 1 when something did.
            """)
        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("Compare with this snapshot (default: the latest).", valueName: "ID"))
        var snapshot: Int64?
        @Flag(help: "Print one JSON object.") var json = false
        @Argument(help: ArgumentHelp("The agent.", valueName: "NAME")) var name: String

        func run() throws {
            try runOrExit {
                let d = try Protect.diff(name, snapshotID: snapshot, layout: global.layout)
                OperatorText.out(json ? OperatorText.json(Protect.diffJSON(d)) : Protect.renderDiff(d))
                return d.changes.isEmpty ? 0 : 1
            }
        }
    }

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Put a snapshot of the protected files back.",
            discussion: """
            Refused while the agent or one of its tool runs is running (its jail would keep \
            seeing the old files), and `clawjail run` of the agent waits out the restore. \
            Each copy is checked against its recorded hash first. Each file is replaced \
            atomically (a new file, then a rename over the old name, which replaces a \
            planted symlink instead of following it); files that appeared inside protected \
            directories since the snapshot are removed. Recorded in the audit log as \
            protect.restore.
            """)
        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("Restore this snapshot (default: the latest).", valueName: "ID"))
        var snapshot: Int64?
        @Flag(help: "Print one JSON object.") var json = false
        @Argument(help: ArgumentHelp("The agent.", valueName: "NAME")) var name: String

        func run() throws {
            try runOrExit {
                let r = try Protect.restore(name, snapshotID: snapshot, layout: global.layout)
                OperatorText.out(json ? OperatorText.json(Protect.restoreJSON(r)) : Protect.renderRestore(r))
                return r.problems.isEmpty ? 0 : 1
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the agent's snapshots, newest first.")
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Print one JSON object, with every file's hash.") var json = false
        @Argument(help: ArgumentHelp("The agent.", valueName: "NAME")) var name: String

        func run() throws {
            try runOrExit {
                let l = try Protect.list(name, layout: global.layout)
                OperatorText.out(json ? OperatorText.json(Protect.listJSON(name, l)) : Protect.renderList(name, l))
                return 0
            }
        }
    }
}
