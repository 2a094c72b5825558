import ClawjailCore

extension StoreError {
    /// Runs a JSON encode or parse: a JSONError (ClawjailCore) becomes the store's
    /// invalidArgument, so callers see one error type from the store.
    static func json<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let e as JSONError {
            throw StoreError(.invalidArgument, e.message)
        }
    }
}
