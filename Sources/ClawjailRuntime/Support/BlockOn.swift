import ClawjailCore
import ClawjailSystem

/// Runs async work from the synchronous supervisor thread and waits for it.
func blockOn<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
    let box = ResultBox<T>()
    let semaphore = PosixSemaphore()
    Task {
        do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
        semaphore.signal()
    }
    semaphore.wait()
    return box.get() ?? .failure(ClawjailError(.internalError, "async work vanished"))
}

final class ResultBox<T: Sendable>: @unchecked Sendable {
    private var value: Result<T, any Error>?
    private let lock = PosixMutex()
    func set(_ v: Result<T, any Error>) {
        lock.withLock { value = v }
    }
    func get() -> Result<T, any Error>? {
        lock.withLock { value }
    }
}
