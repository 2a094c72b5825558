import ClawjailCore
import ClawjailSystem

/// What an agent prints reaches the operator's terminal and the journal only through
/// this filter: control sequences are made visible (an agent must not be able to
/// rewrite the operator's screen, set the window title or inject terminal replies), and
/// known secrets are replaced by "[redacted]".
public struct OutputFilter: Sendable {
    public var secrets: [[UInt8]]

    public init(secrets: [String]) {
        // Longest first, so that a secret containing another is redacted whole.
        self.secrets = Array(Set(secrets.filter { $0.utf8.count >= 8 })).map { Array($0.utf8) }
            .sorted { $0.count > $1.count }
    }

    public func apply(_ line: [UInt8]) -> [UInt8] {
        escape(redact(line))
    }

    func redact(_ input: [UInt8]) -> [UInt8] {
        guard !secrets.isEmpty else { return input }
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var i = 0
        let marker = Array("[redacted]".utf8)
        outer: while i < input.count {
            for s in secrets where i + s.count <= input.count && input[i] == s[0] {
                if input[i..<(i + s.count)].elementsEqual(s) {
                    out += marker
                    i += s.count
                    continue outer
                }
            }
            out.append(input[i])
            i += 1
        }
        return out
    }

    /// Keeps printable UTF-8, tab and newline; everything else becomes \xNN or \u00NN.
    func escape(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        let hex = Array("0123456789abcdef".utf8)
        func put(_ prefix: String, _ b: UInt8) {
            out += Array(prefix.utf8)
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 15)])
        }
        var i = 0
        while i < input.count {
            let b = input[i]
            if b == 0x09 || b == 0x0a || (b >= 0x20 && b < 0x7f) {
                out.append(b)
                i += 1
                continue
            }
            if b < 0x20 || b == 0x7f {
                put("\\x", b)
                i += 1
                continue
            }
            // Multi-byte UTF-8: copy valid sequences, except the C1 controls U+0080-U+009F.
            let length = b >= 0xf0 && b < 0xf5 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 && b < 0xe0 ? 2 : 0
            if length > 0 && i + length <= input.count && input[(i + 1)..<(i + length)].allSatisfy({ $0 & 0xc0 == 0x80 }) {
                if length == 2 && b == 0xc2 && input[i + 1] < 0xa0 {
                    put("\\u00", input[i + 1])
                } else {
                    out += input[i..<(i + length)]
                }
                i += length
                continue
            }
            put("\\x", b)
            i += 1
        }
        return out
    }
}

/// Writes a byte stream to one of our fds line by line through the filter: a line
/// longer than `maxLine` is cut, a partial line waits for its end or a pause.
public struct LineWriter {
    let destination: FD
    let filter: OutputFilter
    var buffer: [UInt8] = []
    static let maxLine = 16 * 1024

    public init(destination: FD, filter: OutputFilter) {
        self.destination = destination
        self.filter = filter
    }

    var hasPendingPartialLine: Bool { !buffer.isEmpty }

    mutating func feed<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        buffer += bytes
        var start = 0
        var out: [UInt8] = []
        for i in buffer.indices where buffer[i] == 0x0a {
            out += filter.apply(Array(buffer[start...i]))
            start = i + 1
        }
        buffer.removeFirst(start)
        if buffer.count >= Self.maxLine {
            out += filter.apply(buffer) + [0x0a]
            buffer.removeAll()
        }
        if !out.isEmpty { try? destination.writeAll(out) }
    }

    /// A line that has not ended after a pause (a prompt, a progress bar) goes out as is.
    mutating func flushPartial() {
        guard !buffer.isEmpty else { return }
        try? destination.writeAll(filter.apply(buffer))
        buffer.removeAll()
    }
}

/// Relays one pipe (the command's stdout or stderr) to one of our fds, line by line.
public struct OutputRelay {
    public let source: FD
    var writer: LineWriter
    public private(set) var isOpen = true

    /// `source` must be the read end of a pipe; it is made non-blocking.
    public init(source: FD, destination: FD, filter: OutputFilter) {
        self.source = source
        self.writer = LineWriter(destination: destination, filter: filter)
        try? source.setNonBlocking(true)
    }

    var hasPendingPartialLine: Bool { writer.hasPendingPartialLine }

    mutating func pump() {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            // An error (EAGAIN: nothing more for now) ends this pump; poll says when to come back.
            guard let n = try? source.read(into: &chunk) else { return }
            if n > 0 {
                writer.feed(chunk[0..<n])
                continue
            }
            if n == 0 {
                flushPartial()
                isOpen = false
                source.close()
            }
            return
        }
    }

    mutating func flushPartial() { writer.flushPartial() }

    mutating func drain(until deadline: UInt64) {
        while isOpen {
            let now = ProcessInfoLite.monotonicNanoseconds
            if now >= deadline {
                flushPartial()
                source.close()
                isOpen = false
                return
            }
            var p = [Poll.Entry(fd: source, events: .readable)]
            _ = try? Poll.waitOnce(&p, timeoutMs: Int32(min((deadline - now) / 1_000_000 + 1, 200)))
            pump()
        }
    }
}
