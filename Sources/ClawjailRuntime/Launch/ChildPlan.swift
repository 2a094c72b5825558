import CClawjailChild
import CClawjailShims
import ClawjailCore
import ClawjailSystem

/// One step of building the jail's root, run by the C child in order. The label names
/// it in errors ("mount workspace at /workspace").
struct ChildOp: Sendable {
    enum Kind: Sendable {
        case mkdir(mode: UInt32)
        case symlink(target: String)
        case writeFile(content: [UInt8], mode: UInt32)
        case attach(fd: FD, isFile: Bool)
        /// isFile: what the parent saw at the source (nil: the child looks).
        case bindHost(source: String, attributes: Mount.Attributes, recursive: Bool, isFile: Bool? = nil)
        case tmpfs(options: String, flags: UInt64)
        case proc(options: String?)
        case devpts(options: String)
        /// A file gets dev/null bound over it, a directory a read-only bind of this
        /// empty host directory.
        case mask(emptyDirectory: String)
        case readOnly(extra: Mount.Attributes)
        case writeExisting(content: String)
        /// An overlayfs whiteout: hides the same name in the layer below.
        case whiteout
        /// A read-only overlayfs: `layers` top first (absolute host paths or paths of the
        /// new root), MS_* `flags`.
        case overlay(layers: [String], flags: UInt64)
    }

    var kind: Kind
    /// Relative to the new root ("usr", "dev/null").
    var path: String
    var optional = false
    var label: String

    init(_ kind: Kind, _ path: String, optional: Bool = false, label: String) {
        self.kind = kind
        self.path = path.hasPrefix("/") ? String(path.dropFirst()) : path
        self.optional = optional
        self.label = label
    }
}

/// MS_* flags for tmpfs ops.
enum MountFlags {
    static let readOnly: UInt64 = 1
    static let noSuid: UInt64 = 2
    static let noDev: UInt64 = 4
    static let noExec: UInt64 = 8
}

/// The flat C plan, owned: built from Swift values, freed when the launch is over.
final class ChildPlan {
    let raw: UnsafeMutablePointer<cj_plan>
    private(set) var labels: [String] = []
    private(set) var rlimitNames: [String] = []

    init() throws(ClawjailError) {
        guard let p = cj_plan_new() else { throw ClawjailError(.internalError, "out of memory building the launch plan") }
        raw = p
    }

    deinit {
        closeLaunchFDs()
        cj_plan_free(raw)
    }

    /// The jail's init program (CClawjailChild/init.c) as a sealed memfd, made once per
    /// process; nil where there is none (another architecture, memfd exec forbidden by
    /// vm.memfd_noexec) or with CLAWJAIL_INPROCESS_INIT=1: then the clone3 child, a copy
    /// of this process, stays the jail's init as before.
    static let initImage: Int32? = {
        if ProcessInfoLite.environment()["CLAWJAIL_INPROCESS_INIT"] == "1" { return nil }
        let fd = cj_init_image_fd()
        return fd >= 0 ? fd : nil
    }()

    /// Lets the child exec the init program; call after setSeccomp. Without the program,
    /// or when the filter's memfd cannot be made, the plan keeps the in-process init.
    func useInitProgram() {
        guard let image = Self.initImage else { return }
        if raw.pointee.bpf_len > 0 {
            let fd = cj_bpf_memfd(raw.pointee.bpf, Int(raw.pointee.bpf_len) * 8)
            guard fd >= 0 else { return }
            raw.pointee.bpf_fd = fd
        }
        raw.pointee.init_fd = image
    }

    /// The filter's memfd is the child's once it is cloned.
    func closeLaunchFDs() {
        if raw.pointee.bpf_fd >= 0 { FD(raw.pointee.bpf_fd).close() }
        raw.pointee.bpf_fd = -1
    }

    func add(_ op: ChildOp) throws(ClawjailError) {
        var kind: UInt32 = 0
        var flags: UInt32 = op.optional ? UInt32(CJ_F_OPTIONAL) : 0
        var fd: Int32 = -1
        var mode: UInt32 = 0
        var mflags: UInt64 = 0
        var mattr: UInt64 = 0
        var arg: [UInt8]?
        switch op.kind {
        case .mkdir(let m):
            kind = UInt32(CJ_OP_MKDIR.rawValue)
            mode = m
        case .symlink(let target):
            kind = UInt32(CJ_OP_SYMLINK.rawValue)
            arg = Array(target.utf8)
        case .writeFile(let content, let m):
            kind = UInt32(CJ_OP_WRITE_FILE.rawValue)
            arg = content
            mode = m
        case .attach(let f, let isFile):
            kind = UInt32(CJ_OP_ATTACH.rawValue)
            fd = f.rawValue
            if isFile { flags |= UInt32(CJ_F_FILE) }
        case .bindHost(let source, let attributes, let recursive, let isFile):
            kind = UInt32(CJ_OP_BIND_HOST.rawValue)
            arg = Array(source.utf8)
            mattr = attributes.rawValue
            if recursive { flags |= UInt32(CJ_F_RECURSIVE) }
            if let isFile { flags |= isFile ? UInt32(CJ_F_FILE) : UInt32(CJ_F_DIR) }
        case .tmpfs(let options, let f):
            kind = UInt32(CJ_OP_TMPFS.rawValue)
            arg = Array(options.utf8)
            mflags = f
        case .proc(let options):
            kind = UInt32(CJ_OP_PROC.rawValue)
            arg = options.map { Array($0.utf8) }
        case .devpts(let options):
            kind = UInt32(CJ_OP_DEVPTS.rawValue)
            arg = Array(options.utf8)
        case .mask(let empty):
            kind = UInt32(CJ_OP_MASK.rawValue)
            arg = Array(empty.utf8)
        case .readOnly(let extra):
            kind = UInt32(CJ_OP_READONLY.rawValue)
            mattr = extra.rawValue
        case .writeExisting(let content):
            kind = UInt32(CJ_OP_WRITE_EXISTING.rawValue)
            arg = Array(content.utf8)
        case .whiteout:
            kind = UInt32(CJ_OP_WHITEOUT.rawValue)
        case .overlay(let layers, let f):
            kind = UInt32(CJ_OP_OVERLAY.rawValue)
            // The paths are clawjail's own ("etc", "/etc"): no ':' or ',' to escape.
            arg = Array(("lowerdir=" + layers.joined(separator: ":")).utf8)
            mflags = f
        }
        let index: Int32
        if let arg {
            index = arg.withUnsafeBufferPointer { b in
                b.withMemoryRebound(to: CChar.self) { c in
                    cj_plan_add_op(raw, kind, flags, fd, mode, mflags, mattr, op.path, c.baseAddress, arg.count)
                }
            }
        } else {
            index = cj_plan_add_op(raw, kind, flags, fd, mode, mflags, mattr, op.path, nil, 0)
        }
        guard index >= 0 else {
            throw ClawjailError(.config, "too many mounts: the jail supports at most \(CJ_MAX_OPS) setup steps")
        }
        labels.append(op.label)
    }

    func setArgv(_ argv: [String]) throws(ClawjailError) {
        let r = withCStrings(argv) { cj_plan_set_argv(raw, $0, Int32(argv.count)) }
        if r != 0 { throw ClawjailError(.internalError, "cannot store the command line in the launch plan") }
    }

    func setEnvironment(_ env: [String]) throws(ClawjailError) {
        let r = withCStrings(env) { cj_plan_set_envp(raw, $0, Int32(env.count)) }
        if r != 0 { throw ClawjailError(.internalError, "cannot store the environment in the launch plan") }
    }

    func setString(_ keyPath: WritableKeyPath<cj_plan, UnsafePointer<CChar>?>, _ value: String?) {
        raw.pointee[keyPath: keyPath] = value.flatMap { cj_plan_strdup(raw, $0) }
    }

    func addRlimit(_ resource: Int32, soft: UInt64, hard: UInt64, name: String) throws(ClawjailError) {
        guard cj_plan_add_rlimit(raw, resource, soft, hard) >= 0 else {
            throw ClawjailError(.internalError, "too many rlimits")
        }
        rlimitNames.append(name)
    }

    func setSeccomp(_ bpf: [UInt8], flags: UInt32) {
        guard !bpf.isEmpty else { return }
        let stored = bpf.withUnsafeBytes { cj_plan_memdup(raw, $0.baseAddress, $0.count) }
        raw.pointee.bpf = stored
        raw.pointee.bpf_len = UInt32(bpf.count / 8)
        raw.pointee.seccomp_flags = flags
    }

    func setForwardedSignals(_ signals: [Int32]) {
        withUnsafeMutableBytes(of: &raw.pointee.forward_signals) { buf in
            let p = buf.bindMemory(to: Int32.self)
            for (i, s) in signals.prefix(Int(CJ_MAX_FORWARD_SIGNALS)).enumerated() { p[i] = s }
        }
        raw.pointee.n_forward_signals = Int32(min(signals.count, Int(CJ_MAX_FORWARD_SIGNALS)))
    }

    func setStdio(_ fds: [Int32]) {
        withUnsafeMutableBytes(of: &raw.pointee.stdio) { buf in
            let p = buf.bindMemory(to: Int32.self)
            for i in 0..<3 { p[i] = i < fds.count ? fds[i] : -1 }
        }
    }

    func label(forOp index: Int32) -> String {
        index >= 0 && Int(index) < labels.count ? labels[Int(index)] : "setup step \(index)"
    }

    func label(forRlimit index: Int32) -> String {
        index >= 0 && Int(index) < rlimitNames.count ? rlimitNames[Int(index)] : "rlimit \(index)"
    }
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    // Copies the caller owns (strdup without libc): NUL-terminated UTF-8.
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { s in
        let bytes = s.utf8CString
        let copy = UnsafeMutableBufferPointer<CChar>.allocate(capacity: bytes.count)
        _ = copy.initialize(from: bytes)
        return copy.baseAddress
    }
    defer { for p in pointers { p?.deallocate() } }
    pointers.append(nil)
    return pointers.withUnsafeBufferPointer { buf in
        body(UnsafeRawPointer(buf.baseAddress)?.assumingMemoryBound(to: UnsafePointer<CChar>?.self))
    }
}
