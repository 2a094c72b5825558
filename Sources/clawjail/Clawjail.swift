import ArgumentParser
import ClawjailCore
import ClawjailRuntime

struct Clawjail: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clawjail",
        abstract: "Run AI agents, and each of their tool runs, in their own Linux jail.",
        discussion: """
        Every jail gets its own user, mount, pid, network, ipc, uts and cgroup namespaces, \
        an unprivileged uid range, cgroup limits, a seccomp allowlist and only the \
        directories its config names. clawjail listens on no TCP port.

        Start here:
          clawjail check agent.toml          validate a config and print the effective plan
          clawjail run agent.toml            run an agent in the foreground
          clawjail exec --workspace DIR -- CMD [ARG...]
                                             run one tool command in a fresh, stricter jail

        Operate many agents (one systemd unit each, clawjail@NAME):
          clawjail ps, stats NAME, logs NAME  what runs, what it uses, what it did
          clawjail stop NAME, kill NAME       orderly stop, emergency stop
          clawjail audit verify|export        check the audit log, ship it off
          clawjail protect snapshot|diff|restore NAME
                                             known-good memory and skill files
          clawjail doctor [--fix]             check the host's hardening

        Run `clawjail help SUBCOMMAND` for the options of each command.
        """,
        subcommands: [Run.self, Exec.self, Check.self, PsCommand.self, StatsCommand.self, LogsCommand.self,
                      StopCommand.self, Kill.self, AuditCommand.self, ProtectCommand.self, DoctorCommand.self, GC.self])
}

/// Options every subcommand that touches state shares.
struct GlobalOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"),
            help: ArgumentHelp("Directory of the state database (default /var/lib/clawjail, or $CLAWJAIL_STATE_DIR).",
                               valueName: "DIR"))
    var stateDirectory: String?

    @Flag(name: .shortAndLong, help: "Print what clawjail does, step by step.")
    var verbose = false

    var layout: HostLayout {
        Log.verbose = verbose
        return HostLayout(stateDirectory: stateDirectory)
    }
}

/// Runs a body that may throw a ClawjailError and turns the error into one clear line
/// and the right exit status.
func runOrExit(_ body: () throws -> Int32) throws -> Never {
    throw ExitCode(exitStatus(body))
}

/// The body's status, or the status its error maps to (64 usage, 78 config, 125 any
/// other failure of clawjail itself), with the error printed as one clear line.
func exitStatus(_ body: () throws -> Int32) -> Int32 {
    do {
        return try body()
    } catch let e as ClawjailError {
        Log.error(e.description)
        switch e.code {
        case .usage: return 64
        case .config: return 78
        default: return 125
        }
    } catch let e as ConfigError {
        Log.error("invalid configuration:\n" + e.description)
        return 78
    } catch {
        Log.error("\(error)")
        return 125
    }
}
