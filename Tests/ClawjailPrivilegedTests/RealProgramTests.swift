import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 20: what agent runtimes hand `clawjail exec`, run for real in tool runs under
/// every shipped seccomp profile, each asserting the program's own success. scripts/setup
/// installs the programs (make, gcc, git, python3-venv, nodejs, openjdk-17-jdk-headless,
/// chromium, fonts-dejavu-core).
extension Privileged {
    @Suite("real programs in tool runs")
    struct RealProgramTests {
        static let profiles = ["tool", "agent", "openclaw", "nanoclaw"]

        static func installed(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }

        /// A workspace with `files`, a tool run of `argv` in it; the workspace is removed after.
        func run(_ argv: [String], files: [String: String] = [:], profile: String, options: [String] = [],
                 timeout: TimeInterval = 120) throws -> (result: Harness.Result, workspace: String) {
            let ws = try Harness.tempDirectory("real")
            for (name, content) in files {
                let path = ws + "/" + name
                try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                        withIntermediateDirectories: true)
                try content.write(toFile: path, atomically: true, encoding: .utf8)
            }
            let r = try Harness.clawjail(["exec", "--profile", profile, "--workspace", ws, "--timeout", "\(Int(timeout))s"]
                                         + options + ["--"] + argv, timeout: timeout + 30)
            return (r, ws)
        }

        @Test("make runs recipes (setresuid to its own ids) and gcc builds a program", arguments: profiles)
        func makeAndGcc(profile: String) throws {
            let (r, ws) = try run(["make", "-s"], files: [
                "Makefile": "all: hello\n\ttrue\n\t./hello\nhello: hello.c\n\tgcc -O2 -o $@ $<\n",
                "hello.c": "#include <stdio.h>\nint main(void) { puts(\"hello from gcc\"); return 0; }\n",
            ], profile: profile)
            defer { Harness.remove(ws) }
            #expect(r.status == 0 && r.lines.last == "hello from gcc", "\(profile): \(r)")
        }

        @Test("git init, commit, branch, log and status", arguments: profiles)
        func git(profile: String) throws {
            let script = """
                set -e
                git init -q -b main repo && cd repo
                git config user.email t@example.com && git config user.name t
                echo one > a && git add a && git commit -qm one
                git switch -qc topic && echo two >> a && git commit -qam two
                git switch -q main && git merge -q --ff-only topic
                git log --oneline | wc -l
                git status --porcelain | wc -l
                """
            let (r, ws) = try run(["/bin/sh", "-c", script], profile: profile)
            defer { Harness.remove(ws) }
            #expect(r.status == 0 && r.lines == ["2", "0"], "\(profile): \(r)")
        }

        @Test("Python: multiprocessing pools and queues, and a venv with pip", arguments: profiles)
        func python(profile: String) throws {
            let code = """
                import multiprocessing as mp, subprocess, sys
                def square(x): return x * x
                if __name__ == "__main__":
                    with mp.Pool(4) as pool: assert pool.map(square, range(10)) == [x * x for x in range(10)]
                    q = mp.Queue(); p = mp.Process(target=q.put, args=("from child",)); p.start(); assert q.get(timeout=30) == "from child"; p.join()
                    lock = mp.Lock(); lock.acquire(); lock.release()
                    subprocess.run([sys.executable, "-m", "venv", "/workspace/venv"], check=True)
                    out = subprocess.run(["/workspace/venv/bin/python", "-m", "pip", "--version"], check=True, capture_output=True, text=True).stdout
                    assert "/workspace/venv" in out, out
                    print("python ok")
                """
            let (r, ws) = try run(["/usr/bin/python3", "/workspace/t.py"], files: ["t.py": code], profile: profile)
            defer { Harness.remove(ws) }
            #expect(r.status == 0 && r.lines.last == "python ok", "\(profile): \(r)")
        }

        @Test("Node: child_process, worker_threads, fs.watch and an HTTP server on loopback", arguments: profiles)
        func node(profile: String) throws {
            let code = """
                const fs = require('fs'), http = require('http'), cp = require('child_process');
                const { Worker } = require('worker_threads');
                const assert = require('assert');
                assert.strictEqual(cp.execFileSync('/bin/echo', ['child']).toString(), 'child\\n');
                const interfaces = Object.keys(require('os').networkInterfaces());
                assert.ok(interfaces.includes('lo'), interfaces);
                const worker = () => new Promise((ok, fail) => {
                  const w = new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true });
                  w.on('message', (m) => { w.terminate(); m === 42 ? ok() : fail(new Error(m)); }); w.on('error', fail);
                });
                const watch = () => new Promise((ok) => {
                  const w = fs.watch('/workspace', (event, name) => { if (name === 'touched') { w.close(); ok(); } });
                  setTimeout(() => fs.writeFileSync('/workspace/touched', 'x'), 50);
                });
                const serve = () => new Promise((ok, fail) => {
                  const s = http.createServer((req, res) => res.end('served ' + req.url));
                  s.listen(0, '127.0.0.1', () => {
                    http.get({ host: '127.0.0.1', port: s.address().port, path: '/x' }, (res) => {
                      let body = ''; res.on('data', (d) => body += d);
                      res.on('end', () => { s.close(); body === 'served /x' ? ok() : fail(new Error(body)); });
                    }).on('error', fail);
                  });
                });
                (async () => { await worker(); await watch(); await serve(); console.log('node ok'); })()
                  .catch((e) => { console.error(e); process.exit(1); });
                """
            let (r, ws) = try run(["/usr/bin/node", "/workspace/t.js"], files: ["t.js": code], profile: profile)
            defer { Harness.remove(ws) }
            #expect(r.status == 0 && r.lines.last == "node ok", "\(profile): \(r)")
        }

        @Test("Java: javac and java, and a single-file source launch that loads java.security",
              .enabled(if: installed("/usr/bin/javac"), "needs javac (scripts/setup installs openjdk-17-jdk-headless)"),
              arguments: profiles)
        func java(profile: String) throws {
            let code = """
                import java.security.MessageDigest;
                import java.security.SecureRandom;
                public class H {
                    public static void main(String[] args) throws Exception {
                        byte[] d = MessageDigest.getInstance("SHA-256").digest("abc".getBytes("UTF-8"));
                        new SecureRandom().nextInt();
                        Thread t = new Thread(() -> {}); t.start(); t.join();
                        System.out.printf("java ok %02x%02x%n", d[0], d[1]);
                    }
                }
                """
            let script = "set -e; cd /workspace; javac -d classes H.java; java -cp classes H; java H.java"
            let (r, ws) = try run(["/bin/sh", "-c", script], files: ["H.java": code], profile: profile,
                                  options: ["--memory", "1G", "--pids", "256"])
            defer { Harness.remove(ws) }
            // sha256("abc") starts ba 78.
            #expect(r.status == 0 && r.lines == ["java ok ba78", "java ok ba78"], "\(profile): \(r)")
        }

        @Test("headless Chromium renders a data: URL to a PNG through Debian's wrapper",
              .enabled(if: installed("/usr/bin/chromium"), "needs chromium (scripts/setup installs it)"),
              arguments: profiles)
        func chromium(profile: String) throws {
            let page = "data:text/html,<html><body style='margin:0;background:rgb(255,0,0)'><p style='font:40px sans-serif'>jail</p></body></html>"
            let (r, ws) = try run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=320,200",
                                   "--screenshot=/workspace/shot.png", page],
                                  profile: profile, options: ["--memory", "2G", "--pids", "512"])
            defer { Harness.remove(ws) }
            #expect(r.status == 0, "\(profile): \(r)")
            let png = try PNGCheck.read(ws + "/shot.png")
            #expect(png.width == 320 && png.height == 200, "\(profile): \(png.width)x\(png.height)")
            // The background is red, and the text drew something that is not.
            #expect(png.fractionOfRed > 0.5, "\(profile): \(png.fractionOfRed) of the pixels are red")
            #expect(png.fractionOfRed < 0.995, "\(profile): the text did not render (no fonts?)")
        }

        @Test("Chromium without --no-sandbox fails, and clawjail says why",
              .enabled(if: installed("/usr/bin/chromium"), "needs chromium (scripts/setup installs it)"))
        func chromiumNeedsNoSandbox() throws {
            let (r, ws) = try run(["chromium", "--headless=new", "--disable-gpu", "--screenshot=/workspace/shot.png", "data:text/html,x"],
                                  profile: "tool", options: ["--memory", "2G", "--pids", "512"])
            defer { Harness.remove(ws) }
            #expect(r.status != 0, "\(r)")
            #expect(r.stderr.contains("hint: Chromium's own sandbox needs user namespaces"), "\(r)")
            #expect(r.stderr.contains("--no-sandbox"), "\(r)")
        }

        @Test("a tool run that hits its pids limit says so",
              .enabled(if: installed("/usr/bin/chromium"), "needs chromium (scripts/setup installs it)"))
        func pidsLimitHint() throws {
            // The tool defaults (64 pids) are too few for a browser.
            let (r, ws) = try run(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--screenshot=/workspace/shot.png",
                                   "data:text/html,x"], profile: "tool")
            defer { Harness.remove(ws) }
            #expect(r.status != 0, "\(r)")
            #expect(r.stderr.contains("hint: the run hit its pids limit (64)") && r.stderr.contains("--pids"), "\(r)")
        }
    }
}

/// Reads a PNG the way a viewer would (zlib through python3's standard library), so the
/// test checks the picture, not just the file's first bytes.
enum PNGCheck {
    struct Picture {
        var width: Int
        var height: Int
        var fractionOfRed: Double
    }

    static func read(_ path: String) throws -> Picture {
        let script = """
            import struct, sys, zlib
            data = open(sys.argv[1], 'rb').read()
            assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'not a PNG'
            pos, idat, ihdr = 8, b'', None
            while pos < len(data):
                n, kind = struct.unpack('>I4s', data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
                if kind == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
                elif kind == b'IDAT': idat += body
            w, h, depth, color = ihdr[0], ihdr[1], ihdr[2], ihdr[3]
            assert depth == 8 and color in (2, 6), (depth, color)
            bpp = 3 if color == 2 else 4
            raw, stride, prev, red = zlib.decompress(idat), w * bpp, bytearray(w * bpp), 0
            for y in range(h):
                f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
                for i in range(stride):
                    a = line[i - bpp] if i >= bpp else 0; b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
                    if f == 1: line[i] = (line[i] + a) & 255
                    elif f == 2: line[i] = (line[i] + b) & 255
                    elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
                    elif f == 4:
                        p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                        line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
                red += sum(1 for x in range(w) if line[x * bpp] > 200 and line[x * bpp + 1] < 50 and line[x * bpp + 2] < 50)
                prev = line
            print(w, h, red / (w * h))
            """
        let r = try Harness.run(["/usr/bin/python3", "-c", script, path])
        let f = r.stdout.split(separator: " ")
        guard r.status == 0, f.count == 3, let w = Int(f[0]), let h = Int(f[1]),
              let red = Double(f[2].trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw HarnessError("cannot read \(path) as a PNG: \(r)")
        }
        return Picture(width: w, height: h, fractionOfRed: red)
    }
}
