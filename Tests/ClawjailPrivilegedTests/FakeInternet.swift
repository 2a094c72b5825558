import ClawjailStore
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A fake internet for the network tests, made of two network namespaces the test
/// creates and deletes:
///
///     cjt-up-…   clawjail runs here (`nsenter --net`, never `ip netns exec`, which would
///                remount /sys and hide the cgroup tree). 100.96.0.2/30 and fd00:cafe::2/64,
///                default routes into cjt-net. Recording "host services" listen on
///                0.0.0.0:80/443/8443 and [::]:80: anything the proxy dials on the host
///                itself (127.x, the host's own address) lands there.
///     cjt-net-…  the fake internet: every site address on lo, recording HTTP(S) servers on
///                0.0.0.0 and [::] (ports 22, 80, 443, 8080, 8443), dnsmasq on 203.0.113.53,
///                a rebinding DNS server on 203.0.113.54. It routes nowhere.
///
/// cjt-up's only neighbour is cjt-net, so even a broken proxy that dials 169.254.169.254
/// or 10.x reaches one of our recording servers, never a real metadata service or a
/// private network. Every address a test aims at exists here; nothing is sent from the
/// host's own namespace.
final class FakeInternet {
    // Sites (all on lo in cjt-net).
    static let allowedSite = "93.184.216.34"    // allowed.example, mixedcase.example, the good half of rebind/mixed
    static let portsSite = "93.184.216.35"      // ports.example
    static let wildSite = "93.184.216.50"       // example.test and names below it
    static let decoySite = "93.184.216.66"      // names that must be refused: never receives anything
    static let dnsServer = "203.0.113.53"       // dnsmasq
    static let rebindServer = "203.0.113.54"    // alternating answers, TTL 0

    /// Metadata and private addresses, each served by a recording server in cjt-net.
    static let forbidden = ["169.254.169.254", "169.254.170.2", "100.100.100.200", "168.63.129.16", "10.0.0.5",
                            "172.16.0.5", "192.168.0.5", "100.64.0.5", "fd00:ec2::254"]

    /// dnsmasq's records. `local=` makes it answer NXDOMAIN/NODATA itself for the rest.
    static let dnsRecords: [(String, String)] = [
        ("allowed.example", allowedSite),
        ("mixedcase.example", allowedSite),
        ("ports.example", portsSite),
        ("allowed.example.evil.example", decoySite),
        ("evilallowed.example", decoySite),
        ("denied.example", decoySite),
        ("example.test", wildSite),
        ("a.example.test", wildSite),
        ("a.b.example.test", wildSite),
        ("xexample.test", decoySite),
        ("loopback.example", "127.0.0.1"),
        ("private.example", "10.0.0.5"),
        ("private172.example", "172.16.0.5"),
        ("private192.example", "192.168.0.5"),
        ("cgnat.example", "100.64.0.5"),
        ("metadata.example", "169.254.169.254"),
        ("ecs.example", "169.254.170.2"),
        ("alibaba.example", "100.100.100.200"),
        ("azure.example", "168.63.129.16"),
        ("mixed.example", "\(allowedSite),fd00:ec2::254"),
    ]

    let id: String
    let up: String
    let net: String
    let dir: String
    /// Mounted read-only at /fake in the jails: the client, the CA certificate, the plans.
    var jailDir: String { dir + "/jail" }
    var stateDir: String { dir + "/state" }
    private var processes: [SpawnedProcess] = []
    private var madeNamespaces: [String] = []
    private var endedPids: [pid_t] = []
    private var stopped = false
    private var planCount = 0

    private init() throws {
        let rand = String(UInt32.random(in: 0...0xff_ffff), radix: 16)
        id = "\(getpid())-\(rand)"
        up = "cjt-up-\(id)"
        net = "cjt-net-\(id)"
        dir = try Harness.tempDirectory("net")
    }

    /// Builds the namespaces and starts the servers. `rebind` maps names to the A
    /// answers the rebinding server gives in turn.
    static func start(rebind: [String: [String]] = [:]) throws -> FakeInternet {
        sweepStale()
        let f = try FakeInternet()
        do {
            try f.build(rebind: rebind)
        } catch {
            f.stop()
            throw error
        }
        return f
    }

    private func build(rebind: [String: [String]]) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: jailDir, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        chmod(stateDir, 0o700)
        try FakeInternetScripts.server.write(toFile: dir + "/fakenet.py", atomically: true, encoding: .utf8)
        try FakeInternetScripts.client.write(toFile: jailDir + "/client.py", atomically: true, encoding: .utf8)
        try FakeInternetScripts.agent.write(toFile: jailDir + "/agent.py", atomically: true, encoding: .utf8)
        let sans = ["allowed.example", "mixedcase.example", "ports.example", "example.test", "*.example.test",
                    "*.b.example.test", "rebind.example", "mixed.example", "denied.example"]
        try sh(["/usr/bin/openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2", "-subj", "/CN=cjt fake internet", "-addext",
                "subjectAltName=" + sans.map { "DNS:" + $0 }.joined(separator: ","),
                "-keyout", dir + "/key.pem", "-out", jailDir + "/cert.pem"])

        // Namespaces and the veth between them. Interface names stay within 15 bytes.
        let vu = "cjt-u" + id.suffix(6), vn = "cjt-n" + id.suffix(6)
        try ip(["netns", "add", up])
        madeNamespaces.append(up)
        try ip(["netns", "add", net])
        madeNamespaces.append(net)
        try ip(["link", "add", vu, "netns", up, "type", "veth", "peer", "name", vn, "netns", net])
        for (ns, cmd) in [
            (up, ["addr", "add", "100.96.0.2/30", "dev", vu]), (up, ["addr", "add", "fd00:cafe::2/64", "dev", vu, "nodad"]),
            (up, ["link", "set", "lo", "up"]), (up, ["link", "set", vu, "up"]),
            (up, ["route", "add", "default", "via", "100.96.0.1"]), (up, ["-6", "route", "add", "default", "via", "fd00:cafe::1"]),
            (net, ["addr", "add", "100.96.0.1/30", "dev", vn]), (net, ["addr", "add", "fd00:cafe::1/64", "dev", vn, "nodad"]),
            (net, ["link", "set", "lo", "up"]), (net, ["link", "set", vn, "up"]),
        ] {
            try ip(["-n", ns] + cmd)
        }
        let siteAddresses = [Self.allowedSite, Self.portsSite, Self.wildSite, Self.decoySite, Self.dnsServer, Self.rebindServer]
        for a in siteAddresses + Self.forbidden {
            try ip(["-n", net, "addr", "add", a + (a.contains(":") ? "/128" : "/32"), "dev", "lo"] + (a.contains(":") ? ["nodad"] : []))
        }

        // The fake internet's servers, and the host services in cjt-up.
        func listeners(_ label: String, _ ports: [(String, Int, String)]) -> [[String: Any]] {
            ports.map { ["kind": $0.2, "host": $0.0, "port": $0.1, "label": label] }
        }
        var netListen = listeners("net", [("0.0.0.0", 22, "http"), ("0.0.0.0", 80, "http"), ("0.0.0.0", 443, "https"),
                                          ("0.0.0.0", 8080, "http"), ("0.0.0.0", 8443, "https"), ("::", 80, "http"),
                                          ("::", 443, "https")])
        netListen.append(["kind": "dns", "host": Self.rebindServer, "port": 53, "answers": rebind])
        try startServer(in: net, name: "net", listen: netListen)
        try startServer(in: up, name: "host", listen: listeners("host", [("0.0.0.0", 80, "http"), ("0.0.0.0", 443, "https"),
                                                                        ("0.0.0.0", 8443, "https"), ("::", 80, "http")]))
        var conf = """
            port=53
            listen-address=\(Self.dnsServer)
            bind-interfaces
            no-resolv
            no-hosts
            no-poll
            user=root
            log-queries
            log-facility=\(dir)/dnsmasq.log
            local=/example/
            local=/test/

            """
        for (name, addresses) in Self.dnsRecords { conf += "host-record=\(name),\(addresses)\n" }
        try conf.write(toFile: dir + "/dnsmasq.conf", atomically: true, encoding: .utf8)
        try spawn(in: net, ["/usr/sbin/dnsmasq", "--conf-file=\(dir)/dnsmasq.conf", "--keep-in-foreground",
                            "--pid-file=\(dir)/dnsmasq.pid"], output: dir + "/dnsmasq.out")
        let ready = Harness.eventually(timeout: 15) {
            read("net.log").contains("\"ready\"") && read("host.log").contains("\"ready\"")
                && read("dnsmasq.log").contains("started")
        }
        if !ready {
            throw HarnessError("the fake internet did not start:\n" + ["net.out", "host.out", "dnsmasq.out", "dnsmasq.log"]
                .map { "--- \($0)\n" + read($0) }.joined())
        }
    }

    private func startServer(in ns: String, name: String, listen: [[String: Any]]) throws {
        let conf: [String: Any] = ["log": "\(dir)/\(name).log", "cert": jailDir + "/cert.pem", "key": dir + "/key.pem",
                                   "listen": listen]
        let data = try JSONSerialization.data(withJSONObject: conf)
        try data.write(to: URL(fileURLWithPath: "\(dir)/\(name).json"))
        try spawn(in: ns, ["/usr/bin/python3", dir + "/fakenet.py", "\(dir)/\(name).json"], output: "\(dir)/\(name).out")
    }

    /// Starts a server in a namespace. nsenter with only --net execs the program itself,
    /// so the pid we hold is the server's and we end it by that pid.
    private func spawn(in ns: String, _ argv: [String], output: String) throws {
        processes.append(try SpawnedProcess(["/usr/bin/nsenter", "--net=/run/netns/\(ns)"] + argv, output: output))
    }

    /// Ends our servers by pid, deletes both namespaces (the veth goes with them) and
    /// the directory. Safe to call twice.
    func stop() {
        guard !stopped else { return }
        stopped = true
        for p in processes { p.signal(SIGTERM) }
        for p in processes { p.end(within: 3) }
        endedPids = processes.map(\.pid)
        processes = []
        for ns in madeNamespaces.reversed() { _ = try? Harness.run(["/usr/sbin/ip", "netns", "del", ns], timeout: 10) }
        madeNamespaces = []
        if ProcessInfo.processInfo.environment["CJT_KEEP_FAKE_INTERNET"] == nil { Harness.remove(dir) }
    }

    /// After `stop`: neither namespace, nor any of our servers, nor the directory is left.
    var leftovers: [String] {
        var out: [String] = []
        // A pid may be reused: it is ours only if it still runs one of our commands.
        for pid in endedPids {
            let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            if cmdline.contains(dir) { out.append("pid \(pid)") }
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        out += names.filter { $0 == up || $0 == net }
        if FileManager.default.fileExists(atPath: dir), ProcessInfo.processInfo.environment["CJT_KEEP_FAKE_INTERNET"] == nil {
            out.append(dir)
        }
        return out
    }

    /// Namespaces of earlier test processes that died before cleaning up: their servers
    /// (found by the namespace's inode) are killed and the names deleted. Only names of
    /// the exact form `cjt-up-<pid>-<hex>` / `cjt-net-<pid>-<hex>` whose pid is gone.
    static func sweepStale() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        for name in names where name.hasPrefix("cjt-up-") || name.hasPrefix("cjt-net-") {
            let parts = name.split(separator: "-")
            guard parts.count == 4, let pid = Int32(parts[2]), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            var st = stat()
            guard stat("/run/netns/\(name)", &st) == 0 else { continue }
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let p = Int32(entry) else { continue }
                var ps = stat()
                if stat("/proc/\(p)/ns/net", &ps) == 0 && ps.st_ino == st.st_ino && ps.st_dev == st.st_dev {
                    kill(p, SIGKILL)
                }
            }
            _ = try? Harness.run(["/usr/sbin/ip", "netns", "del", name], timeout: 10)
        }
    }

    private func ip(_ args: [String]) throws { try sh(["/usr/sbin/ip"] + args) }

    private func sh(_ argv: [String]) throws {
        let r = try Harness.run(argv, timeout: 30)
        guard r.status == 0 else { throw HarnessError("\(argv.joined(separator: " ")) failed: \(r)") }
    }

    func read(_ file: String) -> String {
        (try? String(contentsOfFile: dir + "/" + file, encoding: .utf8)) ?? ""
    }

    // MARK: running clawjail inside cjt-up

    /// `clawjail ARGS` with cjt-up as its network namespace and our own state directory.
    func clawjail(_ args: [String], timeout: TimeInterval = 90) throws -> Harness.Result {
        try Harness.run(["/usr/bin/nsenter", "--net=/run/netns/\(up)", Harness.binary] + args,
                        environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CLAWJAIL_STATE_DIR": stateDir],
                        timeout: timeout)
    }

    /// Runs the client in a `clawjail exec` jail (with `options`, e.g. --allow), every
    /// step in order, and returns each step's result by id.
    func runClient(_ steps: [ClientStep], options: [String]) throws -> ClientRun {
        planCount += 1
        let plan = "plan-\(planCount).json"
        let data = try JSONSerialization.data(withJSONObject: steps.map(\.dict))
        try data.write(to: URL(fileURLWithPath: jailDir + "/" + plan))
        let r = try clawjail(["exec", "--quiet", "--ro", jailDir + ":/fake"] + options
                             + ["--", "/usr/bin/python3", "/fake/client.py", "/fake/" + plan])
        var results: [String: ClientStepResult] = [:]
        for line in r.lines {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let id = obj["id"] as? String else { continue }
            results[id] = ClientStepResult(obj)
        }
        return ClientRun(process: r, results: results)
    }

    // MARK: what arrived where

    /// Every record of a server log ("net": the fake internet, "host": cjt-up's services).
    func serverLog(_ which: String = "net") -> [[String: Any]] {
        read(which + ".log").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// HTTP requests received at `site` (any port), in order.
    func requests(at site: String, log: String = "net") -> [[String: Any]] {
        serverLog(log).filter { $0["ev"] as? String == "request" && $0["site"] as? String == site }
    }

    /// Addresses that accepted at least one connection.
    func sitesReached(log: String = "net") -> Set<String> {
        Set(serverLog(log).filter { $0["ev"] as? String == "accept" }.compactMap { $0["site"] as? String })
    }

    /// What must never happen, whatever the test: a connection to a metadata or private
    /// address, to the decoy site, or to a service of the host (cjt-up) itself.
    func forbiddenContacts() -> [String] {
        let bad = sitesReached().filter { Self.forbidden.contains($0) || $0 == Self.decoySite }
        let host = sitesReached(log: "host")
        return bad.sorted() + host.sorted().map { "host:" + $0 }
    }

    /// (type, name) of every query dnsmasq received, in order.
    func dnsQueries() -> [(type: String, name: String)] {
        read("dnsmasq.log").split(separator: "\n").compactMap { line in
            guard let q = line.range(of: " query[") else { return nil }
            let rest = line[q.upperBound...]
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let type = String(rest[..<close])
            let name = rest[rest.index(after: close)...].split(separator: " ").first.map(String.init) ?? ""
            return (type, name)
        }
    }

    /// Answers the rebinding server gave, in order: (name, type, answer).
    func rebindAnswers() -> [(name: String, type: String, answer: String?)] {
        serverLog().filter { $0["ev"] as? String == "dns" }.map {
            ($0["name"] as? String ?? "", $0["type"] as? String ?? "", $0["answer"] as? String)
        }
    }

    /// The audit chain in the state directory: it must verify; returns every event.
    func auditEvents() throws -> (verified: Bool, events: [NetAuditEvent]) {
        let store = try Store.open(directory: stateDir)
        defer { try? store.close() }
        let verification = try store.verifyAudit()
        var events: [NetAuditEvent] = []
        try store.exportAudit { line in
            if let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] {
                events.append(NetAuditEvent(kind: obj["kind"] as? String ?? "", agent: obj["agent"] as? String ?? "",
                                          payload: obj["payload"] as? [String: Any] ?? [:]))
            }
        }
        if case .ok = verification { return (true, events) }
        return (false, events)
    }

    /// Every log, for failure messages.
    var dump: String {
        ["net.log", "host.log", "dnsmasq.log", "net.out", "host.out", "dnsmasq.out"].map { "--- \($0)\n" + read($0) }.joined()
    }
}

/// A process of ours started with posix_spawn, not Foundation's Process, for two
/// reasons: Process starts children with most signals blocked (SIGTERM would not end
/// them), and its reaper blocks in wait4 on a child that closes the fds it inherited
/// (dnsmasq does), after which no other child of the test process is ever reaped.
final class SpawnedProcess {
    let pid: pid_t
    private(set) var status: Int32?

    init(_ argv: [String], environment: [String: String] = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
         output: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let args = argv.map { strdup($0) } + [nil]
        let env = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in args + env { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, args, env)
        guard rc == 0 else { throw HarnessError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        self.pid = pid
    }

    var isRunning: Bool {
        if status != nil { return false }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid { status = st } else if r < 0 { status = -1 }
        return status == nil
    }

    func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// Waits up to `seconds` for the process to exit, then kills it; always reaps it.
    func end(within seconds: TimeInterval) {
        if Harness.eventually(timeout: seconds, { !isRunning }) { return }
        kill(pid, SIGKILL)
        var st: Int32 = 0
        if waitpid(pid, &st, 0) == pid { status = st } else { status = -1 }
    }
}

struct NetAuditEvent: CustomStringConvertible {
    var kind: String
    var agent: String
    var payload: [String: Any]
    subscript(_ key: String) -> String? {
        guard let v = payload[key] else { return nil }
        return "\(v)"
    }
    var description: String { "\(kind) \(payload)" }
}

/// One step of the in-jail client's plan (see FakeInternetScripts.client).
struct ClientStep {
    var dict: [String: Any]

    static let proxy = ("10.200.0.1", 3128)

    /// Sends `raw` to host:port (the proxy by default; a name is resolved by the jail's
    /// resolver), inside TLS when `tls` (with SNI `sni`, none when nil), and reads the
    /// response to EOF.
    static func http(_ id: String, _ raw: String, host: String = proxy.0, port: Int = proxy.1, tls: Bool = false,
                     sni: String? = nil) -> ClientStep {
        var d: [String: Any] = ["id": id, "op": "http", "host": host, "port": port, "send": raw]
        if tls {
            d["tls"] = true
            d["cafile"] = "/fake/cert.pem"
            if let sni { d["sni"] = sni }
        }
        return ClientStep(dict: d)
    }

    /// CONNECT `authority` at the proxy; on 200, `then` is sent through the tunnel
    /// (inside TLS when `sni` is set) and its response read to EOF.
    static func connect(_ id: String, _ authority: String, hostHeader: String? = nil, then: String? = nil,
                        sni: String? = nil) -> ClientStep {
        var raw = "CONNECT \(authority) HTTP/1.1\r\n"
        if let hostHeader { raw += "Host: \(hostHeader)\r\n" }
        raw += "\r\n"
        var d: [String: Any] = ["id": id, "op": "connect", "send": raw]
        if let then { d["then"] = then }
        if let sni {
            d["tls"] = true
            d["sni"] = sni
            d["cafile"] = "/fake/cert.pem"
        }
        return ClientStep(dict: d)
    }

    static func tcp(_ id: String, _ host: String, _ port: Int) -> ClientStep {
        ClientStep(dict: ["id": id, "op": "tcp", "host": host, "port": port, "timeout": 5])
    }

    /// A DNS A query for `name` sent straight to host:port over UDP.
    static func udp(_ id: String, _ host: String, _ port: Int, name: String) -> ClientStep {
        ClientStep(dict: ["id": id, "op": "udp", "host": host, "port": port, "name": name, "timeout": 2])
    }

    /// getaddrinfo through the jail's resolv.conf.
    static func resolve(_ id: String, _ name: String) -> ClientStep {
        ClientStep(dict: ["id": id, "op": "resolve", "name": name])
    }

    static func cmd(_ id: String, _ argv: [String], timeout: Int = 20) -> ClientStep {
        ClientStep(dict: ["id": id, "op": "cmd", "argv": argv, "timeout": timeout])
    }

    /// A request head; `Connection: close` so the response ends at EOF.
    static func request(_ target: String, host: String?, method: String = "GET", headers: [(String, String)] = []) -> String {
        var s = "\(method) \(target) HTTP/1.1\r\n"
        if let host { s += "Host: \(host)\r\n" }
        for (k, v) in headers { s += "\(k): \(v)\r\n" }
        return s + "User-Agent: cjt-client\r\nConnection: close\r\n\r\n"
    }
}

/// The result of one step, as the client printed it.
struct ClientStepResult: CustomStringConvertible {
    let raw: [String: Any]
    init(_ raw: [String: Any]) { self.raw = raw }

    var status: Int? { raw["status"] as? Int }
    var headers: [String: String] { raw["headers"] as? [String: String] ?? [:] }
    var deny: String? { headers["x-clawjail-deny"] }
    var body: String { raw["body"] as? String ?? "" }
    /// "OK", an errno name (ECONNREFUSED), an exception name, or "ANSWER".
    var result: String? { raw["result"] as? String }
    var rc: Int? { raw["rc"] as? Int }
    var out: String { raw["out"] as? String ?? "" }
    var ms: Double { (raw["ms"] as? Double) ?? Double(raw["ms"] as? Int ?? 0) }
    var inner: ClientStepResult? { (raw["inner"] as? [String: Any]).map(ClientStepResult.init) }
    var addrs: [String] { raw["addrs"] as? [String] ?? [] }
    var rcode: Int? { raw["rcode"] as? Int }

    /// The fake site's JSON answer (in `body`, or in `out` for curl).
    var site: [String: Any]? {
        for text in [body, out] {
            if let line = text.split(separator: "\n").first(where: { $0.hasPrefix("{") }),
               let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return obj }
        }
        return nil
    }
    var siteAddress: String? { site?["site"] as? String }

    var description: String {
        (try? String(decoding: JSONSerialization.data(withJSONObject: raw, options: [.sortedKeys]), as: UTF8.self)) ?? "\(raw)"
    }
}

struct ClientRun: CustomStringConvertible {
    let process: Harness.Result
    let results: [String: ClientStepResult]

    /// The result of step `id`; a missing step is recorded as a failure by the caller's #require.
    subscript(_ id: String) -> ClientStepResult? { results[id] }
    var description: String { process.description }
}
