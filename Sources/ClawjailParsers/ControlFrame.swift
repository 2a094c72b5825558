/// The micro-VM control channel's frames, on the virtio-serial port between the host and
/// the guest's init (Sources/ClawjailGuest). Both sides treat the other's bytes as
/// untrusted: a frame is bounded, and the decoder never buffers more than one frame.
///
/// Wire format (all integers big-endian):
///
///     u32 length        bytes that follow: 1 (the type) + the payload; 1...maxBody
///     u8  type
///     payload           by type:
///       0x01 ready      str kernel release                          guest → host
///       0x02 run        u32 count, count × str (argv)               host → guest
///       0x03 exit       i32 status (128+N for signal N), str output guest → host
///       0x04 shutdown   (empty)                                     host → guest
///       0x05 error      str message                                 guest → host
///
///     str = u32 byte count + UTF-8 bytes
///
/// A decoded frame must use its whole body: trailing bytes are an error, so one frame
/// cannot smuggle a second one past the length check.
public enum ControlFrame: Equatable, Sendable {
    case ready(kernelRelease: String)
    case run(argv: [String])
    case exit(status: Int32, output: [UInt8])
    case shutdown
    case error(message: String)

    /// The largest body (type + payload). 64 KiB keeps the host's buffer per guest small.
    public static let maxBody = 64 << 10
    /// The header before the body.
    public static let headerSize = 4
    /// What an `exit` frame may carry of a command's output: the body minus its fields.
    public static let maxExitOutput = maxBody - 1 - 4 - 4

    enum Kind: UInt8 {
        case ready = 1, run = 2, exit = 3, shutdown = 4, error = 5
    }

    /// The frame's bytes; throws when the body would exceed `maxBody`.
    public func encoded() throws(ControlFrameError) -> [UInt8] {
        var body: [UInt8] = []
        switch self {
        case .ready(let release):
            body.append(Kind.ready.rawValue)
            Self.putString(release, into: &body)
        case .run(let argv):
            body.append(Kind.run.rawValue)
            Self.putU32(UInt32(argv.count), into: &body)
            for arg in argv { Self.putString(arg, into: &body) }
        case .exit(let status, let output):
            body.append(Kind.exit.rawValue)
            Self.putU32(UInt32(bitPattern: status), into: &body)
            Self.putU32(UInt32(output.count), into: &body)
            body += output
        case .shutdown:
            body.append(Kind.shutdown.rawValue)
        case .error(let message):
            body.append(Kind.error.rawValue)
            Self.putString(message, into: &body)
        }
        guard body.count <= Self.maxBody else { throw .tooLarge(body.count) }
        var frame: [UInt8] = []
        frame.reserveCapacity(Self.headerSize + body.count)
        Self.putU32(UInt32(body.count), into: &frame)
        return frame + body
    }

    /// Decodes one body (the bytes after the length).
    public static func decode(body: ArraySlice<UInt8>) throws(ControlFrameError) -> ControlFrame {
        var reader = Reader(bytes: body)
        let type = try reader.u8()
        guard let kind = Kind(rawValue: type) else { throw .unknownType(type) }
        let frame: ControlFrame
        switch kind {
        case .ready:
            frame = .ready(kernelRelease: try reader.string())
        case .run:
            let count = try reader.u32()
            // Each argument takes at least its 4-byte length: a count beyond that is a lie.
            guard Int(count) <= reader.remaining / 4 else { throw .malformed("run: \(count) arguments in \(reader.remaining) bytes") }
            var argv: [String] = []
            argv.reserveCapacity(Int(count))
            for _ in 0..<count { argv.append(try reader.string()) }
            guard !argv.isEmpty else { throw .malformed("run: empty argv") }
            frame = .run(argv: argv)
        case .exit:
            let status = Int32(bitPattern: try reader.u32())
            frame = .exit(status: status, output: try reader.field())
        case .shutdown:
            frame = .shutdown
        case .error:
            frame = .error(message: try reader.string())
        }
        guard reader.remaining == 0 else { throw .malformed("\(reader.remaining) bytes after a \(kind) frame") }
        return frame
    }

    static func putU32(_ v: UInt32, into out: inout [UInt8]) {
        out += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]
    }

    static func putString(_ s: String, into out: inout [UInt8]) {
        let bytes = Array(s.utf8)
        putU32(UInt32(bytes.count), into: &out)
        out += bytes
    }

    struct Reader {
        var bytes: ArraySlice<UInt8>
        var remaining: Int { bytes.count }

        mutating func u8() throws(ControlFrameError) -> UInt8 {
            guard let b = bytes.first else { throw .malformed("empty body") }
            bytes = bytes.dropFirst()
            return b
        }

        mutating func u32() throws(ControlFrameError) -> UInt32 {
            guard bytes.count >= 4 else { throw .malformed("truncated integer") }
            let i = bytes.startIndex
            let v = UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
            bytes = bytes.dropFirst(4)
            return v
        }

        mutating func field() throws(ControlFrameError) -> [UInt8] {
            let n = Int(try u32())
            guard n <= bytes.count else { throw .malformed("a field of \(n) bytes with \(bytes.count) left") }
            let out = Array(bytes.prefix(n))
            bytes = bytes.dropFirst(n)
            return out
        }

        mutating func string() throws(ControlFrameError) -> String {
            let raw = try field()
            guard let s = String(validating: raw, as: UTF8.self) else { throw .malformed("a string that is not UTF-8") }
            return s
        }
    }
}

public enum ControlFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A length beyond `ControlFrame.maxBody`: the peer is broken or hostile; close the channel.
    case tooLarge(Int)
    /// A length of 0: a frame has at least its type.
    case empty
    case unknownType(UInt8)
    case malformed(String)

    public var description: String {
        switch self {
        case .tooLarge(let n): return "control frame of \(n) bytes exceeds the bound of \(ControlFrame.maxBody)"
        case .empty: return "control frame with an empty body"
        case .unknownType(let t): return "control frame of unknown type \(t)"
        case .malformed(let why): return "malformed control frame: \(why)"
        }
    }
}

/// Splits a byte stream into frames. Feed it what a read returned, then take frames
/// until `next()` returns nil. It holds at most one partial frame plus the last chunk
/// fed, and rejects a length beyond the bound as soon as the header is in.
public struct ControlFrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    public init() {}

    public mutating func append<S: Sequence>(_ bytes: S) where S.Element == UInt8 {
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Bytes received but not yet part of a returned frame.
    public var pending: Int { buffer.count - start }

    public mutating func next() throws(ControlFrameError) -> ControlFrame? {
        guard pending >= ControlFrame.headerSize else { return nil }
        let i = start
        let length = Int(UInt32(buffer[i]) << 24 | UInt32(buffer[i + 1]) << 16 | UInt32(buffer[i + 2]) << 8 | UInt32(buffer[i + 3]))
        guard length > 0 else { throw .empty }
        guard length <= ControlFrame.maxBody else { throw .tooLarge(length) }
        guard pending >= ControlFrame.headerSize + length else { return nil }
        let bodyStart = i + ControlFrame.headerSize
        let frame = try ControlFrame.decode(body: buffer[bodyStart..<(bodyStart + length)])
        start = bodyStart + length
        return frame
    }
}
