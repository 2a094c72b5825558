import ClawjailCore
import ClawjailSystem

/// Secrets the output filter redacts: the contents of the credentials files, and
/// environment values whose names say they are secrets.
enum Secrets {
    static func collect(spec: JailSpec) -> [String] {
        var out: [String] = []
        for v in spec.environment where v.looksSecret {
            out.append(v.value)
        }
        for m in spec.mounts where m.role == .credentials {
            out += fileSecrets(m.host, depth: 0)
        }
        return out.filter { $0.utf8.count >= 8 }
    }

    private static func fileSecrets(_ dir: String, depth: Int) -> [String] {
        guard depth < 4, let names = try? FileSystem.listDirectory(dir) else { return [] }
        var out: [String] = []
        for n in names {
            let p = dir + "/" + n
            guard let st = try? FileSystem.stat(p) else { continue }
            if st.isDirectory {
                out += fileSecrets(p, depth: depth + 1)
            } else if st.isRegular && st.size <= 64 * 1024, let text = try? FileSystem.readText(p, limit: 65536) {
                // Whole values, and each line (KEY=VALUE files, JSON with one value per line).
                let trimmed = String(text.trimming(" \n\r\t"))
                out.append(trimmed)
                for line in trimmed.split(separator: "\n") {
                    let l = String(line.trimming(" \r\t"))
                    out.append(l)
                    if let eq = l.firstIndex(of: "=") { out.append(String(l[l.index(after: eq)...])) }
                    if let colon = l.firstIndex(of: ":") {
                        out.append(String(l[l.index(after: colon)...].trimming(" \"',")))
                    }
                }
            }
        }
        return out
    }
}
