extension StringProtocol {
    /// Without the leading and trailing characters made of `characters`: the one
    /// trimmer of the package (Foundation's `trimmingCharacters(in:)` stays out of
    /// Sources/). A character counts when all its scalars are in the set, so "\r\n",
    /// one Character to Swift, goes when both "\r" and "\n" are given.
    public func trimming(_ characters: String) -> Substring {
        let set = Set(characters.unicodeScalars)
        func trimmable(_ c: Character) -> Bool { c.unicodeScalars.allSatisfy(set.contains) }
        let s = Substring(self)
        guard let first = s.firstIndex(where: { !trimmable($0) }), let last = s.lastIndex(where: { !trimmable($0) }) else {
            return s[s.endIndex...]
        }
        return s[first...last]
    }
}
