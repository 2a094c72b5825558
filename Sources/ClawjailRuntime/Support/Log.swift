import ClawjailSystem

/// The supervisor's own messages, one line each, on stderr: "clawjail: ...".
public enum Log {
    public nonisolated(unsafe) static var verbose = false
    public nonisolated(unsafe) static var quiet = false

    public static func info(_ message: String) {
        if quiet { return }
        emit("clawjail: " + message)
    }

    public static func debug(_ message: @autoclosure () -> String) {
        if verbose { emit("clawjail: debug: " + message()) }
    }

    public static func warning(_ message: String) {
        emit("clawjail: warning: " + message)
    }

    public static func error(_ message: String) {
        emit("clawjail: " + message)
    }

    static func emit(_ line: String) {
        let text = line.hasSuffix("\n") ? line : line + "\n"
        try? FD.standardError.writeAll(text)
    }
}

/// CLAWJAIL_TRACE=1: each start-up step of a launch on stderr with its CLOCK_MONOTONIC
/// time in microseconds (the C child adds its own steps), for profiling `exec`.
public enum Trace {
    public static let enabled = ProcessInfoLite.environment()["CLAWJAIL_TRACE"] != nil

    public static func mark(_ step: StaticString) {
        guard enabled else { return }
        Log.emit("clawjail: trace: \(ProcessInfoLite.monotonicNanoseconds / 1000) \(step)")
    }

    /// A step with details that are only worth building when tracing.
    public static func mark(_ step: StaticString, _ details: @autoclosure () -> String) {
        guard enabled else { return }
        Log.emit("clawjail: trace: \(ProcessInfoLite.monotonicNanoseconds / 1000) \(step) \(details())")
    }
}
