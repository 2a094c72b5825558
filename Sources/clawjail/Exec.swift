import ArgumentParser
import ClawjailCore
import ClawjailRuntime

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one command (a tool run) in a fresh jail and return its exit status.",
        discussion: """
        For agent runtimes: call this once per tool run, the way you would call bwrap. \
        stdin, stdout and stderr are passed straight through; the exit status is the \
        command's (128+N when it was killed by signal N). clawjail adds one line on \
        stderr saying how the run ended (use --quiet to drop it).

        The jail has the same isolation as an agent's, with stricter defaults: the \
        `tool` seccomp profile, no network, 256M of memory, 64 pids, one core and a \
        10 minute wall clock. It never sees any credentials.

        Big programs need more than the defaults: a build with many workers wants \
        --pids 512; a headless browser wants --memory 2G --pids 512 and Chromium's \
        --no-sandbox (the jail is its sandbox; Chromium's own needs privileges a jail \
        does not give). clawjail's last line says which limit a run hit.

        Exit status when clawjail itself ended the run: 124 timed out, 125 the jail \
        could not be set up, 126/127 the command could not be executed, 137 OOM-killed.

        Examples:
          clawjail exec --workspace /srv/tools/run1 -- python3 script.py
          clawjail exec --ro /opt/models:/models --timeout 30s -- ./infer
          clawjail exec --config tool.toml -- make test
          clawjail exec --print-plan --workspace /srv/tools/run1 -- make | jq .mounts
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Run as a tool run of this agent: its [tools] policy, workspace, protect paths and uid range, recorded in its audit log. Never its credentials.", valueName: "NAME"))
    var agent: String?

    @Option(name: .customLong("json-status"), help: ArgumentHelp("Write one JSON line with the run id, how it ended, the exit status, resource use and duration to this inherited file descriptor.", valueName: "FD"))
    var jsonStatus: Int32?

    @Option(name: .customLong("config"), help: ArgumentHelp("A tool.toml with workspace, mounts, env, limits, seccomp and network.", valueName: "FILE"))
    var config: String?

    @Option(help: ArgumentHelp("Host directory mounted read-write at /workspace (and the starting directory).", valueName: "DIR"))
    var workspace: String?

    @Option(name: .customLong("ro"), help: ArgumentHelp("Mount a host path read-only, at DEST or at the same path (repeatable).", valueName: "HOST[:DEST]"))
    var readOnly: [String] = []

    @Option(name: .customLong("rw"), help: ArgumentHelp("Mount a host path read-write (repeatable).", valueName: "HOST[:DEST]"))
    var readWrite: [String] = []

    @Option(help: ArgumentHelp("Set an environment variable in the jail (repeatable). Nothing else of your environment goes in.", valueName: "K=V"))
    var env: [String] = []

    @Option(help: ArgumentHelp("Working directory inside the jail (default: /workspace, else /tmp).", valueName: "DIR"))
    var cwd: String?

    @Option(help: ArgumentHelp("Kill the run after this long: 500ms, 30s, 10m, 1h (default 10m).", valueName: "DURATION"))
    var timeout: String?

    @Option(help: ArgumentHelp("Memory limit, no swap: 256M, 1G (default 256M).", valueName: "SIZE"))
    var memory: String?

    @Option(help: ArgumentHelp("Maximum number of processes and threads (default 64).", valueName: "N"))
    var pids: UInt64?

    @Option(help: ArgumentHelp("CPU limit in cores, e.g. 0.5 or 2 (default 1).", valueName: "CORES"))
    var cpu: Double?

    @Option(help: ArgumentHelp("Network: none (the default: loopback only) or egress (allowlisted names through clawjail's proxy).", valueName: "MODE"))
    var network: String?

    @Option(help: ArgumentHelp("Allow egress to this name (repeatable): api.example.com, *.example.com, host:port. Implies --network egress.", valueName: "NAME"))
    var allow: [String] = []

    @Option(help: ArgumentHelp("DNS server the egress proxy uses instead of /etc/resolv.conf (repeatable).", valueName: "IP[:PORT]"))
    var resolver: [String] = []

    @Option(help: ArgumentHelp("Seccomp profile: a name from profiles/ (tool, agent, ...) or a path to a .toml (default tool).", valueName: "PROFILE"))
    var profile: String?

    @Option(help: ArgumentHelp("uid inside the jail (default 1000).", valueName: "UID"))
    var user: String?

    @Option(help: ArgumentHelp("On SIGTERM/SIGINT, how long the command gets to exit before SIGKILL (default 10s).", valueName: "DURATION"))
    var grace: String?

    @Option(name: .customLong("record-retry"), help: ArgumentHelp("When the state directory is full (or its disk fails) as the command ends, how long to keep retrying its record (default 5s; 0 does not wait). The exit status stays the command's. An end still unrecorded is kept in STATE_DIR/run-ends/, shows as 'end not recorded' in ps and logs, and is recorded by the next `clawjail ps` or `logs` that can write.", valueName: "DURATION"))
    var recordRetry: String?

    @Flag(help: "Do not print the one-line result on stderr.")
    var quiet = false

    @Flag(name: .customLong("print-plan"), help: "Print the tool run's launch plan as JSON (one line: every mount step, rlimit, cgroup value, the seccomp profile and its hash, the process) and run nothing.")
    var printPlan = false

    @Argument(parsing: .postTerminator, help: ArgumentHelp("The command and its arguments, after --.", valueName: "CMD"))
    var command: [String] = []

    func validate() throws {
        do { try arguments.validate() } catch { throw ValidationError(error.message) }
    }

    /// The raw values, as the reflection-free fast path (FastExec) also produces them.
    var arguments: ExecArguments {
        ExecArguments(stateDirectory: global.stateDirectory, verbose: global.verbose, agent: agent, jsonStatus: jsonStatus,
                      config: config, workspace: workspace, readOnly: readOnly, readWrite: readWrite, env: env, cwd: cwd,
                      timeout: timeout, memory: memory, pids: pids, cpu: cpu, network: network, allow: allow,
                      resolver: resolver, profile: profile, user: user, grace: grace, recordRetry: recordRetry, quiet: quiet,
                      printPlan: printPlan, command: command)
    }

    func run() throws {
        try runOrExit { try arguments.run() }
    }
}

/// Everything `clawjail exec` takes, as plain values. Filled by ArgumentParser (Exec)
/// or, on the hot path, by FastExec, which parses the same options without reflection:
/// in a binary this size, ArgumentParser's first dynamic casts scan every protocol
/// conformance of the program and cost milliseconds that `exec` does not have.
struct ExecArguments {
    var stateDirectory: String?
    var verbose = false
    var agent: String?
    var jsonStatus: Int32?
    var config: String?
    var workspace: String?
    var readOnly: [String] = []
    var readWrite: [String] = []
    var env: [String] = []
    var cwd: String?
    var timeout: String?
    var memory: String?
    var pids: UInt64?
    var cpu: Double?
    var network: String?
    var allow: [String] = []
    var resolver: [String] = []
    var profile: String?
    var user: String?
    var grace: String?
    var recordRetry: String?
    var quiet = false
    var printPlan = false
    var command: [String] = []

    func validate() throws(ClawjailError) {
        if command.isEmpty { throw ClawjailError(.usage, "no command given: write clawjail exec [OPTIONS] -- CMD [ARG...]") }
        for e in env where !e.contains("=") { throw ClawjailError(.usage, "--env \(e): write NAME=VALUE") }
        if let c = cpu, !(c > 0) { throw ClawjailError(.usage, "--cpu must be a number of cores greater than 0") }
        if let p = pids, p == 0 { throw ClawjailError(.usage, "--pids must be at least 1") }
        if let fd = jsonStatus, fd < 3 { throw ClawjailError(.usage, "--json-status needs an fd of its own (3 or more): 0-2 belong to the command") }
    }

    func run() throws -> Int32 {
        // A digest of every field, so that a test can run one command line through both
        // parsers (FastExec and ArgumentParser) and compare what each made of it. Not
        // the fields themselves: --env values are often secrets, and traces end up in logs.
        Trace.mark("arguments parsed", "sha256:" + SHA256.hexDigest(of: "\(self)"))
        try validate()
        var o = ToolRunOptions(argv: command)
        o.workspace = workspace
        o.readOnly = try readOnly.map(splitMount)
        o.readWrite = try readWrite.map(splitMount)
        o.env = env.map { e in
            let i = e.firstIndex(of: "=") ?? e.endIndex
            return (String(e[..<i]), i < e.endIndex ? String(e[e.index(after: i)...]) : "")
        }
        o.cwd = cwd
        if let t = timeout { o.timeoutMs = try parseOption("--timeout", t) { v throws(Units.ParseError) in try Units.parseDuration(v, allowZero: false) } }
        if let m = memory { o.memory = try parseOption("--memory", m) { v throws(Units.ParseError) in try Units.parseSize(v) } }
        o.pids = pids
        o.profile = profile
        if let n = network {
            guard let mode = AgentConfig.NetworkMode(rawValue: n) else {
                throw ClawjailError(.usage, "--network \(n): write none or egress")
            }
            o.network = mode
        }
        for a in allow {
            switch AllowRule.parse(a) {
            case .success(let rule): o.allow.append(rule)
            case .failure(let e): throw ClawjailError(.usage, "--allow: \(e)")
            }
        }
        if !allow.isEmpty && o.network == nil { o.network = .egress }
        for r in resolver where ResolverAddress.parse(r) == nil {
            throw ClawjailError(.usage, "--resolver \(r): write an IP address, optionally with :PORT")
        }
        o.resolvers = resolver
        o.cpu = cpu
        if let u = user {
            guard let v = Units.parseStrictDecimal(u), v >= 1, v <= 65534 else {
                throw ClawjailError(.usage, "--user \(u) must be a decimal uid between 1 and 65534")
            }
            o.user = UInt32(v)
        }
        Log.verbose = verbose
        var request = ToolRunRequest(options: o, layout: HostLayout(stateDirectory: stateDirectory))
        request.toolConfigPath = config
        request.agentName = agent
        request.statusFD = jsonStatus
        request.quiet = quiet
        request.printPlan = printPlan
        if let g = grace { request.graceMs = try parseOption("--grace", g) { v throws(Units.ParseError) in try Units.parseDuration(v, allowZero: true) } }
        if let r = recordRetry {
            request.recordRetryMs = try parseOption("--record-retry", r) { v throws(Units.ParseError) in try Units.parseDuration(v, allowZero: true) }
        }
        return try ToolRun.run(request)
    }
}

func splitMount(_ s: String) throws -> (host: String, target: String?) {
    guard let i = s.firstIndex(of: ":") else { return (s, nil) }
    let host = String(s[..<i]), target = String(s[s.index(after: i)...])
    if host.isEmpty || target.isEmpty { throw ClawjailError(.usage, "'\(s)': write HOST or HOST:DEST") }
    return (host, target)
}

func parseOption<T>(_ flag: String, _ value: String, _ body: (String) throws(Units.ParseError) -> T) throws -> T {
    do { return try body(value) } catch {
        throw ClawjailError(.usage, "\(flag) \(value): \(error)")
    }
}
