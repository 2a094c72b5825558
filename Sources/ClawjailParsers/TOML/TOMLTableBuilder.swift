// The mutable tree the parser fills in. Tables are classes so that a header or dotted
// key can reach into a table created earlier and extend it in place; `build()` turns the
// finished tree into the immutable public value types.

final class TOMLTableBuilder {
    /// How a table came to exist. TOML's redefinition rules depend on it.
    enum Origin {
        case root
        /// Created only as a prefix of a header path (`a` in `[a.b]`); a later `[a]`
        /// may still define it.
        case implicit
        /// Defined by its own `[header]` (or `[[header]]` element).
        case header
        /// Defined by dotted keys (`a` in `a.b = 1`).
        case dotted
        /// The top of an inline table, which is complete once its `}` is read.
        case inline
    }

    enum Item {
        /// Scalars, static arrays and inline tables: never extended after definition.
        case value(TOMLNode)
        case table(TOMLTableBuilder)
        case arrayOfTables(TOMLArrayOfTablesBuilder)
    }

    struct Entry {
        var key: String
        var keyLocation: SourceLocation
        var item: Item
    }

    var origin: Origin
    var location: SourceLocation
    /// Nesting depth from the root, bounded so `build()` cannot recurse without limit.
    let depth: Int
    private(set) var entries: [Entry] = []
    /// Key → position in `entries`, built only for large tables: below
    /// `indexThreshold` keys a linear scan is faster than hashing.
    private var index: [String: Int]?
    private static let indexThreshold = 16

    init(origin: Origin, location: SourceLocation, depth: Int) {
        self.origin = origin
        self.location = location
        self.depth = depth
    }

    func entry(_ key: String) -> Entry? {
        if let index {
            return index[key].map { entries[$0] }
        }
        return entries.first { $0.key == key }
    }

    /// The caller has checked that `key` is new.
    func append(_ key: String, at keyLocation: SourceLocation, _ item: Item) {
        entries.append(Entry(key: key, keyLocation: keyLocation, item: item))
        if index != nil {
            index?[key] = entries.count - 1
        } else if entries.count >= Self.indexThreshold {
            // Keys are unique (callers check first); keeping the first never traps regardless.
            index = Dictionary(entries.enumerated().map { ($1.key, $0) }, uniquingKeysWith: { first, _ in first })
        }
    }

    func build() -> TOMLTable {
        var table = TOMLTable(entries: [], location: location)
        table.entries.reserveCapacity(entries.count)
        for entry in entries {
            let node: TOMLNode
            switch entry.item {
            case .value(let value):
                node = value
            case .table(let child):
                node = TOMLNode(value: .table(child.build()), location: child.location)
            case .arrayOfTables(let array):
                let elements = array.tables.map { TOMLNode(value: .table($0.build()), location: $0.location) }
                node = TOMLNode(value: .array(elements), location: array.location)
            }
            table.entries.append(TOMLTable.Entry(key: entry.key, keyLocation: entry.keyLocation, node: node))
        }
        return table
    }
}

final class TOMLArrayOfTablesBuilder {
    /// The first `[[header]]`.
    let location: SourceLocation
    /// Never empty: the array is created together with its first element.
    private(set) var tables: [TOMLTableBuilder]

    init(first: TOMLTableBuilder) {
        location = first.location
        tables = [first]
    }

    var last: TOMLTableBuilder { tables[tables.count - 1] }

    func append(_ table: TOMLTableBuilder) {
        tables.append(table)
    }
}
