import Foundation
import Testing

extension Privileged {
    /// `clawjail exec` has two parsers: FastExec, by hand, for the hot path (ArgumentParser
    /// costs milliseconds per start in a binary this size), and ArgumentParser for
    /// everything else. Each command line here goes through both (CLAWJAIL_EXEC_PARSER
    /// sends it to ArgumentParser), and CLAWJAIL_TRACE shows a digest of every field each
    /// made of it. The runs stop at the missing --config, before anything is started.
    @Suite("exec: the fast parser agrees with ArgumentParser")
    struct ExecParserTests {
        static let every: [String] = [
            "--state-dir", "/nonexistent/state", "--verbose", "--agent", "cjt-nobody", "--json-status", "7",
            "--config", "/nonexistent/tool.toml", "--workspace", "/tmp/ws", "--ro", "/usr/share:/share", "--ro", "/opt",
            "--rw", "/tmp/out:/out", "--env", "A=1", "--env", "B=two words", "--cwd", "/workspace/sub",
            "--timeout", "30s", "--memory", "512M", "--pids", "64", "--cpu", "1.5", "--network", "egress",
            "--allow", "api.example.com", "--allow", "*.example.org:8443", "--resolver", "192.0.2.53",
            "--profile", "tool", "--user", "1000", "--grace", "2s", "--record-retry", "5s", "--quiet", "--print-plan",
        ]

        /// Every option once (two of the repeatable ones twice), in `--name value` and
        /// `--name=value` form, short -v, and a command whose arguments look like options.
        static let lines: [[String]] = [
            every + ["--", "/bin/echo", "--quiet", "-v"],
            every.enumerated().compactMap { i, a in
                // --name=value: join each option with the value after it.
                if a.hasPrefix("--") && i + 1 < every.count && !every[i + 1].hasPrefix("--") { return a + "=" + every[i + 1] }
                if i > 0 && every[i - 1].hasPrefix("--") && !a.hasPrefix("--") { return nil }
                return a
            } + ["--", "/bin/true"],
            ["-v", "--memory", "1G", "--env", "X=a=b", "--", "/bin/sh", "-c", "exit 3"],
            ["--config", "/nonexistent/tool.toml", "--", "--"],
        ]

        static func parsed(_ line: [String], fast: Bool) throws -> (arguments: String, byFastExec: Bool) {
            var env = ["CLAWJAIL_TRACE": "1"]
            if !fast { env["CLAWJAIL_EXEC_PARSER"] = "argument-parser" }
            let r = try Harness.clawjail(["exec", "--config", "/nonexistent/tool.toml"] + line, environment: env, timeout: 30)
            #expect(r.status != 0, "the missing --config stops the run: \(r)")
            let marker = " arguments parsed "
            let trace = try #require(r.stderr.split(separator: "\n").first { $0.contains(marker) }, "\(r)")
            let arguments = try #require(trace.range(of: marker).map { String(trace[$0.upperBound...]) })
            return (arguments, r.stderr.contains("exec options parsed by FastExec"))
        }

        @Test("the same arguments from both parsers", arguments: lines)
        func same(_ line: [String]) throws {
            let fast = try Self.parsed(line, fast: true), full = try Self.parsed(line, fast: false)
            #expect(fast.byFastExec, "FastExec handed this line on: \(line)")
            #expect(!full.byFastExec)
            #expect(fast.arguments == full.arguments, "\(line)")
            #expect(fast.arguments.hasPrefix("sha256:") && fast.arguments.count == 71, "\(fast.arguments)")
        }

        @Test("the digest changes with any field")
        func digestSeesFields() throws {
            let a = try Self.parsed(["--memory", "1G", "--", "/bin/true"], fast: true)
            let b = try Self.parsed(["--memory", "2G", "--", "/bin/true"], fast: true)
            let c = try Self.parsed(["--memory", "1G", "--", "/bin/true", "x"], fast: true)
            #expect(a.arguments != b.arguments && a.arguments != c.arguments)
        }

        @Test("every option of `exec --help` is one FastExec knows")
        func coversHelp() throws {
            let help = try Harness.clawjail(["exec", "--help"])
            // The option lines of the OPTIONS section (the discussion above it names
            // options of other programs, such as Chromium's --no-sandbox).
            let section = try #require(help.stdout.range(of: "OPTIONS:").map { help.stdout[$0.upperBound...] }, "\(help)")
            var options = Set<String>()
            for line in section.split(separator: "\n") where line.drop(while: { $0 == " " }).hasPrefix("-") {
                for word in line.split(whereSeparator: { $0 == " " || $0 == "," }) where word.hasPrefix("--") && word.count > 2 {
                    options.insert(String(word))
                }
            }
            #expect(options.contains("--memory") && options.contains("--quiet"), "\(options)")
            let known = Set(Self.every.filter { $0.hasPrefix("--") })
            #expect(options.subtracting(known).subtracting(["--help", "--version"]).isEmpty, "not in these tests: \(options.subtracting(known))")
        }
    }
}
