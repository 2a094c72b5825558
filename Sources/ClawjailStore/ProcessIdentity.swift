import ClawjailSystem

/// A process named by pid *and* start time, so that a reused pid is not mistaken for
/// the supervisor that wrote a run row.
enum ProcessIdentity {
    /// Field 22 of /proc/<pid>/stat (start time in clock ticks after boot), or nil when
    /// the process does not exist or the file cannot be parsed.
    static func startTime(pid: Int32) -> UInt64? {
        switch readStat(pid: pid) {
        case .contents(let bytes): return parseStartTime(stat: bytes)
        case .absent, .unreadable: return nil
        }
    }

    /// True when `pid` exists and started at `startTime`. When /proc cannot tell
    /// (for example EACCES under hidepid), the process counts as alive: declaring a
    /// live supervisor lost would let a second one run the same agent.
    static func isAlive(pid: Int32, startTime: UInt64) -> Bool {
        guard pid > 0 else { return false }
        switch readStat(pid: pid) {
        case .absent: return false
        case .unreadable: return true
        case .contents(let bytes):
            guard let actual = parseStartTime(stat: bytes) else { return true }
            return actual == startTime
        }
    }

    /// Parses the start time out of the text of /proc/<pid>/stat. The command name
    /// (field 2) is in parentheses and may itself hold spaces and ')', so fields are
    /// counted from the last ')'.
    static func parseStartTime(stat: [UInt8]) -> UInt64? {
        guard let close = stat.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        // After ')' come fields 3, 4, ...; field 22 is the 20th of them.
        let fields = stat[(close + 1)...].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: true)
        guard fields.count >= 20 else { return nil }
        var text = String(decoding: fields[fields.startIndex + 19], as: UTF8.self)
        if text.hasSuffix("\n") { text.removeLast() }
        return UInt64(text)
    }

    private enum StatRead {
        case contents([UInt8])
        case absent
        case unreadable
    }

    private static func readStat(pid: Int32) -> StatRead {
        let fd: FD
        do {
            fd = try FileSystem.open("/proc/\(pid)/stat", .readOnly)
        } catch {
            return error == .ENOENT || error == .ESRCH ? .absent : .unreadable
        }
        defer { fd.close() }
        // 52 fields of at most 20 digits plus a 16-byte name fit in 4 KiB.
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while total < buffer.count {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { raw in
                    try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[total...]))
                }
            } catch let error as Errno {
                // A process that exits between open and read gives ESRCH.
                return error == .ESRCH ? .absent : .unreadable
            } catch {
                return .unreadable
            }
            if count == 0 { break }
            total += count
        }
        return .contents(Array(buffer[..<total]))
    }
}
