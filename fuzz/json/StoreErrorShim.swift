// JSONValue.swift throws ClawjailStore's StoreError, whose file also wraps SQLite
// errors; this stand-in has only what JSONValue.swift uses, so the harness compiles
// the parser without the store and SQLite.

struct StoreError: Error, CustomStringConvertible {
    enum Code { case invalidArgument }
    let code: Code
    let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    var description: String { message }
}
