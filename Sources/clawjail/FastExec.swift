import ClawjailCore
import ClawjailRuntime

/// The hot path of `clawjail exec`, parsed by hand. Agent runtimes call exec for every
/// tool run, and ArgumentParser's reflection costs a few milliseconds in a binary this
/// size. Anything unusual (help, a typo, a missing value, no `--`) returns nil, and the
/// ArgumentParser command then parses the same line and explains the problem.
enum FastExec {
    static func parse(_ argv: [String]) -> ExecArguments? {
        guard argv.count >= 4, argv[1] == "exec" else { return nil }
        var a = ExecArguments()
        var i = 2
        while i < argv.count {
            let arg = argv[i]
            if arg == "--" {
                a.command = Array(argv[(i + 1)...])
                return a.command.isEmpty ? nil : a
            }
            var name = arg
            var inline: String?
            if arg.hasPrefix("--"), let eq = arg.firstIndex(of: "=") {
                name = String(arg[..<eq])
                inline = String(arg[arg.index(after: eq)...])
            }
            switch name {
            case "--quiet":
                guard inline == nil else { return nil }
                a.quiet = true
                i += 1
                continue
            case "--print-plan":
                guard inline == nil else { return nil }
                a.printPlan = true
                i += 1
                continue
            case "-v", "--verbose":
                guard inline == nil else { return nil }
                a.verbose = true
                i += 1
                continue
            default: break
            }
            let value: String
            if let inline {
                value = inline
                i += 1
            } else {
                guard i + 1 < argv.count, argv[i + 1] != "--" else { return nil }
                value = argv[i + 1]
                i += 2
            }
            switch name {
            case "--state-dir": a.stateDirectory = value
            case "--agent": a.agent = value
            case "--json-status": guard let v = Int32(value) else { return nil }; a.jsonStatus = v
            case "--config": a.config = value
            case "--workspace": a.workspace = value
            case "--ro": a.readOnly.append(value)
            case "--rw": a.readWrite.append(value)
            case "--env": a.env.append(value)
            case "--cwd": a.cwd = value
            case "--timeout": a.timeout = value
            case "--memory": a.memory = value
            case "--pids": guard let v = UInt64(value) else { return nil }; a.pids = v
            case "--cpu": guard let v = Double(value) else { return nil }; a.cpu = v
            case "--network": a.network = value
            case "--allow": a.allow.append(value)
            case "--resolver": a.resolver.append(value)
            case "--profile": a.profile = value
            case "--user": a.user = value
            case "--grace": a.grace = value
            case "--record-retry": a.recordRetry = value
            default: return nil
            }
        }
        return nil
    }

    /// Runs `exec` when the fast parser understood the whole line; nil otherwise.
    static func run(_ argv: [String]) -> Int32? {
        guard let a = parse(argv) else { return nil }
        Trace.mark("exec options parsed by FastExec")
        return exitStatus { try a.run() }
    }
}
