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
///       0x06 setup      u32 n, n × (str tag, str path, u8 read-only),
///                       u32 m, m × (str path, str target),
///                       u8 has-network [str mac, str address, u8 prefix, str gateway]
///                                                                   host → guest
///       0x07 setupDone  (empty)                                     guest → host
///       0x08 spawn      u32 session, u32 uid, u32 gid, str cwd,
///                       u32 count × str (argv), u32 count × str (env) host → guest
///       0x09 started    u32 session, i32 pid                        guest → host
///       0x0a data       u32 session, u8 stream, u32 n + n bytes     both ways
///       0x0b credit     u32 session, u8 stream, u32 bytes           both ways
///       0x0c signal     u32 session, i32 signal                     host → guest
///       0x0d exited     u32 session, i32 code, i32 signal           guest → host
///       0x0e file       str name, u32 mode, u32 n + n bytes         host → guest
///                       (also a tool run's client → supervisor)
///       0x0f memory     u64 MemTotal kB, u64 MemAvailable kB,       guest → host
///                       u64 bytes charged to the guest's jails (every 2 s)
///                       (a file of the guest jail's, written under the guest's
///                       `fileDirectory`; answered by setupDone or error)
///
///     str = u32 byte count + UTF-8 bytes; stream 0 stdin, 1 stdout, 2 stderr
///
/// Streams are credit-based: a side sends `data` on a stream only within the bytes the
/// other side granted with `credit` (stdout and stderr: the host grants; stdin: the
/// guest does), so neither can make the other buffer more than its window. An empty
/// `data` frame ends the stream.
///
/// A decoded frame must use its whole body: trailing bytes are an error, so one frame
/// cannot smuggle a second one past the length check.
public enum ControlFrame: Equatable, Sendable {
    case ready(kernelRelease: String)
    case run(argv: [String])
    case exit(status: Int32, output: [UInt8])
    case shutdown
    case error(message: String)
    case setup(mounts: [GuestMount], links: [GuestLink], network: GuestNetwork?)
    case setupDone
    case spawn(GuestSpawn)
    case started(session: UInt32, pid: Int32)
    case data(session: UInt32, stream: UInt8, bytes: [UInt8])
    case credit(session: UInt32, stream: UInt8, bytes: UInt32)
    case signal(session: UInt32, signal: Int32)
    case exited(session: UInt32, code: Int32, signal: Int32)
    case file(name: String, mode: UInt32, content: [UInt8])
    case memory(totalKB: UInt64, availableKB: UInt64, jailsBytes: UInt64)

    /// A virtio-fs share the guest mounts (tag from the VMM's command line).
    public struct GuestMount: Hashable, Sendable {
        public var tag: String
        public var path: String
        public var readOnly: Bool
        public init(tag: String, path: String, readOnly: Bool) {
            self.tag = tag
            self.path = path
            self.readOnly = readOnly
        }
    }

    /// A symlink of the guest's root (bin -> usr/bin on a merged-/usr host).
    public struct GuestLink: Hashable, Sendable {
        public var path: String
        public var target: String
        public init(path: String, target: String) {
            self.path = path
            self.target = target
        }
    }

    /// The guest's NIC (the virtio-net device with `mac`): its address, and the
    /// default route through the proxy's end of the veth.
    public struct GuestNetwork: Hashable, Sendable {
        public var mac: String
        public var address: String
        public var prefixLength: UInt8
        public var gateway: String
        public init(mac: String, address: String, prefixLength: UInt8, gateway: String) {
            self.mac = mac
            self.address = address
            self.prefixLength = prefixLength
            self.gateway = gateway
        }
    }

    /// A process the guest starts with its stdio on the session's streams.
    public struct GuestSpawn: Equatable, Sendable {
        public var session: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var cwd: String
        public var argv: [String]
        public var environment: [String]
        public init(session: UInt32, uid: UInt32, gid: UInt32, cwd: String, argv: [String], environment: [String]) {
            self.session = session
            self.uid = uid
            self.gid = gid
            self.cwd = cwd
            self.argv = argv
            self.environment = environment
        }
    }

    /// Where the guest writes `file` frames: its own tmpfs, never a share. A name is a
    /// file name, or one directory and a file name (`isFileName`).
    public static let fileDirectory = "/run/clawjail/guest"

    public static let stdin: UInt8 = 0
    public static let stdout: UInt8 = 1
    public static let stderr: UInt8 = 2

    /// The largest body (type + payload). 64 KiB keeps the host's buffer per guest small.
    public static let maxBody = 64 << 10
    /// The header before the body.
    public static let headerSize = 4
    /// What an `exit` frame may carry of a command's output: the body minus its fields.
    public static let maxExitOutput = maxBody - 1 - 4 - 4
    /// The most one `data` frame carries: the body minus type, session, stream, length.
    public static let maxData = maxBody - 1 - 4 - 1 - 4

    enum Kind: UInt8 {
        case ready = 1, run = 2, exit = 3, shutdown = 4, error = 5
        case setup = 6, setupDone = 7, spawn = 8, started = 9, data = 10, credit = 11, signal = 12, exited = 13
        case file = 14, memory = 15
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
        case .setup(let mounts, let links, let network):
            body.append(Kind.setup.rawValue)
            Self.putU32(UInt32(mounts.count), into: &body)
            for m in mounts {
                Self.putString(m.tag, into: &body)
                Self.putString(m.path, into: &body)
                body.append(m.readOnly ? 1 : 0)
            }
            Self.putU32(UInt32(links.count), into: &body)
            for l in links {
                Self.putString(l.path, into: &body)
                Self.putString(l.target, into: &body)
            }
            if let n = network {
                body.append(1)
                Self.putString(n.mac, into: &body)
                Self.putString(n.address, into: &body)
                body.append(n.prefixLength)
                Self.putString(n.gateway, into: &body)
            } else {
                body.append(0)
            }
        case .setupDone:
            body.append(Kind.setupDone.rawValue)
        case .spawn(let s):
            body.append(Kind.spawn.rawValue)
            Self.putU32(s.session, into: &body)
            Self.putU32(s.uid, into: &body)
            Self.putU32(s.gid, into: &body)
            Self.putString(s.cwd, into: &body)
            Self.putStrings(s.argv, into: &body)
            Self.putStrings(s.environment, into: &body)
        case .started(let session, let pid):
            body.append(Kind.started.rawValue)
            Self.putU32(session, into: &body)
            Self.putU32(UInt32(bitPattern: pid), into: &body)
        case .data(let session, let stream, let bytes):
            body.append(Kind.data.rawValue)
            Self.putU32(session, into: &body)
            body.append(stream)
            Self.putU32(UInt32(bytes.count), into: &body)
            body += bytes
        case .credit(let session, let stream, let bytes):
            body.append(Kind.credit.rawValue)
            Self.putU32(session, into: &body)
            body.append(stream)
            Self.putU32(bytes, into: &body)
        case .signal(let session, let signal):
            body.append(Kind.signal.rawValue)
            Self.putU32(session, into: &body)
            Self.putU32(UInt32(bitPattern: signal), into: &body)
        case .exited(let session, let code, let signal):
            body.append(Kind.exited.rawValue)
            Self.putU32(session, into: &body)
            Self.putU32(UInt32(bitPattern: code), into: &body)
            Self.putU32(UInt32(bitPattern: signal), into: &body)
        case .file(let name, let mode, let content):
            body.append(Kind.file.rawValue)
            Self.putString(name, into: &body)
            Self.putU32(mode, into: &body)
            Self.putU32(UInt32(content.count), into: &body)
            body += content
        case .memory(let total, let available, let jails):
            body.append(Kind.memory.rawValue)
            for v in [total, available, jails] {
                Self.putU32(UInt32(v >> 32), into: &body)
                Self.putU32(UInt32(v & 0xffff_ffff), into: &body)
            }
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
            let argv = try reader.strings("run")
            guard !argv.isEmpty else { throw .malformed("run: empty argv") }
            frame = .run(argv: argv)
        case .exit:
            let status = Int32(bitPattern: try reader.u32())
            frame = .exit(status: status, output: try reader.field())
        case .shutdown:
            frame = .shutdown
        case .error:
            frame = .error(message: try reader.string())
        case .setup:
            // Each entry takes at least its fields' lengths: a count beyond that is a lie.
            let n = try reader.u32()
            guard Int(n) <= reader.remaining / 9 else { throw .malformed("setup: \(n) mounts in \(reader.remaining) bytes") }
            var mounts: [GuestMount] = []
            for _ in 0..<n {
                let tag = try reader.string()
                let path = try reader.string()
                let ro = try reader.u8()
                guard ro <= 1 else { throw .malformed("setup: read-only flag \(ro)") }
                mounts.append(GuestMount(tag: tag, path: path, readOnly: ro == 1))
            }
            let m = try reader.u32()
            guard Int(m) <= reader.remaining / 8 else { throw .malformed("setup: \(m) links in \(reader.remaining) bytes") }
            var links: [GuestLink] = []
            for _ in 0..<m { links.append(GuestLink(path: try reader.string(), target: try reader.string())) }
            var network: GuestNetwork?
            switch try reader.u8() {
            case 0: break
            case 1:
                let mac = try reader.string()
                let address = try reader.string()
                let prefix = try reader.u8()
                network = GuestNetwork(mac: mac, address: address, prefixLength: prefix, gateway: try reader.string())
            case let flag: throw .malformed("setup: network flag \(flag)")
            }
            frame = .setup(mounts: mounts, links: links, network: network)
        case .setupDone:
            frame = .setupDone
        case .spawn:
            let session = try reader.u32()
            let uid = try reader.u32()
            let gid = try reader.u32()
            let cwd = try reader.string()
            let argv = try reader.strings("spawn")
            guard !argv.isEmpty else { throw .malformed("spawn: empty argv") }
            let env = try reader.strings("spawn")
            frame = .spawn(GuestSpawn(session: session, uid: uid, gid: gid, cwd: cwd, argv: argv, environment: env))
        case .started:
            frame = .started(session: try reader.u32(), pid: Int32(bitPattern: try reader.u32()))
        case .data:
            let session = try reader.u32()
            let stream = try reader.stream()
            frame = .data(session: session, stream: stream, bytes: try reader.field())
        case .credit:
            let session = try reader.u32()
            let stream = try reader.stream()
            frame = .credit(session: session, stream: stream, bytes: try reader.u32())
        case .signal:
            frame = .signal(session: try reader.u32(), signal: Int32(bitPattern: try reader.u32()))
        case .exited:
            frame = .exited(session: try reader.u32(), code: Int32(bitPattern: try reader.u32()),
                            signal: Int32(bitPattern: try reader.u32()))
        case .file:
            let name = try reader.string()
            guard Self.isFileName(name) else { throw .malformed("file: \(name.debugDescription) is not a file name") }
            let mode = try reader.u32()
            guard mode & ~0o777 == 0 else { throw .malformed("file: mode \(String(mode, radix: 8))") }
            frame = .file(name: name, mode: mode, content: try reader.field())
        case .memory:
            func u64() throws(ControlFrameError) -> UInt64 { UInt64(try reader.u32()) << 32 | UInt64(try reader.u32()) }
            frame = .memory(totalKB: try u64(), availableKB: try u64(), jailsBytes: try u64())
        }
        guard reader.remaining == 0 else { throw .malformed("\(reader.remaining) bytes after a \(kind) frame") }
        return frame
    }

    /// A file name, or one directory and a file name ("t-1a2b/jail.json": a tool run's
    /// files): each part not empty, not "." or "..", at most 255 bytes, no NUL.
    public static func isFileName(_ name: String) -> Bool {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, !name.contains("\0") else { return false }
        return parts.allSatisfy { !$0.isEmpty && $0.utf8.count <= 255 && $0 != "." && $0 != ".." }
    }

    static func putU32(_ v: UInt32, into out: inout [UInt8]) {
        out += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)]
    }

    static func putStrings(_ list: [String], into out: inout [UInt8]) {
        putU32(UInt32(list.count), into: &out)
        for s in list { putString(s, into: &out) }
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

        /// A count and that many strings; each takes at least its 4-byte length, so a
        /// count beyond that is a lie.
        mutating func strings(_ frame: String) throws(ControlFrameError) -> [String] {
            let count = try u32()
            guard Int(count) <= remaining / 4 else { throw .malformed("\(frame): \(count) strings in \(remaining) bytes") }
            var out: [String] = []
            out.reserveCapacity(Int(count))
            for _ in 0..<count { out.append(try string()) }
            return out
        }

        mutating func stream() throws(ControlFrameError) -> UInt8 {
            let s = try u8()
            guard s <= 2 else { throw .malformed("stream \(s)") }
            return s
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
