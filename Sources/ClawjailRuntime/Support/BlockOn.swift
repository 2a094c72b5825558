#if canImport(Glibc)
import Glibc
#endif
import ClawjailCore

/// Runs async work from the synchronous supervisor thread and waits for it.
func blockOn<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> Result<T, any Error> {
    let box = ResultBox<T>()
    let semaphore = DispatchSemaphoreLite()
    Task {
        do { box.set(.success(try await body())) } catch { box.set(.failure(error)) }
        semaphore.signal()
    }
    semaphore.wait()
    return box.get() ?? .failure(ClawjailError(.internalError, "async work vanished"))
}

final class ResultBox<T: Sendable>: @unchecked Sendable {
    private var value: Result<T, any Error>?
    private var lock = pthread_mutex_t()
    init() { pthread_mutex_init(&lock, nil) }
    func set(_ v: Result<T, any Error>) {
        pthread_mutex_lock(&lock)
        value = v
        pthread_mutex_unlock(&lock)
    }
    func get() -> Result<T, any Error>? {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return value
    }
}

final class DispatchSemaphoreLite: @unchecked Sendable {
    private var sem = sem_t()
    init() { sem_init(&sem, 0, 0) }
    deinit { sem_destroy(&sem) }
    func signal() { sem_post(&sem) }
    func wait() { while sem_wait(&sem) != 0 && errno == EINTR {} }
}
