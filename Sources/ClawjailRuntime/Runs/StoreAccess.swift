import ClawjailCore
import ClawjailStore

/// The store, opened with clawjail's error conventions.
public enum StoreAccess {
    public static func open(_ layout: HostLayout) throws(ClawjailError) -> Store {
        do {
            return try Store.open(directory: layout.stateDirectory)
        } catch {
            throw wrap(error, "opening the state database in \(layout.stateDirectory)")
        }
    }

    public static func wrap(_ error: any Error, _ doing: String) -> ClawjailError {
        if let e = error as? ClawjailError { return e }
        if let s = error as? StoreError {
            if case .alreadyRunning = s.code {
                return ClawjailError(.conflict, s.description)
            }
            if s.code == .full || s.isRetryable {
                return ClawjailError(.state, "state database error while \(doing): \(s.cause)", hint: s.message)
            }
            return ClawjailError(.state, "state database error while \(doing)", cause: s.description)
        }
        return ClawjailError(.state, "state database error while \(doing)", cause: error)
    }

    /// For the writes before a jail starts: a jail whose record cannot be written does
    /// not run (it would run unaudited), and the error says so.
    public static func wrapStart(_ error: any Error, _ doing: String) -> ClawjailError {
        var e = wrap(error, doing)
        if let s = error as? StoreError, s.code == .full || s.isRetryable {
            e.message += "; the jail does not start without its record"
        }
        return e
    }

    /// `markLostRuns` for the read-only operator commands: when the state directory is
    /// full they still show what is recorded (readers derive lost and unrecorded ends
    /// themselves), with a warning instead of failing.
    public static func settleRuns(_ store: Store) throws(ClawjailError) {
        do {
            try store.markLostRuns()
        } catch let e as StoreError where e.isRetryable {
            Log.warning("could not write down the runs of dead supervisors in \(store.directory) (\(e.cause)); "
                        + "showing them as they are: free space in \(store.directory)")
        } catch {
            throw wrap(error, "marking runs of dead supervisors as lost")
        }
    }

    public static func outcome(_ r: RunResult) -> RunOutcome {
        let status: RunStatus
        switch r.end {
        case .exited(let c): status = .exited(code: c)
        case .signaled(let s): status = r.stoppedBy.map { RunStatus.killed(by: "operator (\($0))") } ?? .signaled(signal: s)
        case .oomKilled: status = .oomKilled
        case .timedOut: status = .timedOut
        case .setupFailed(let m): status = .setupFailed(message: m)
        case .execFailed(let m, _): status = .setupFailed(message: m)
        case .vmFailed(let m): status = .setupFailed(message: m)
        }
        return RunOutcome(status: status, exitCode: r.exitStatus, durationMs: Int64(r.durationMs),
                          peakMemoryBytes: r.stats.memoryPeak.map { Int64(clamping: $0) },
                          cpuUsec: r.stats.cpuUsageMicros.map { Int64(clamping: $0) })
    }
}
