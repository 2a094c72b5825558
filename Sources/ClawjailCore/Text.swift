extension String {
    /// Every occurrence of `target` replaced, left to right. On UTF-8 bytes: the
    /// generic string search of the standard library costs more to set up than the
    /// jail's /etc templates take to fill, on every exec. (A match of valid UTF-8 can
    /// only start at a character boundary, so bytes give the same result.)
    public func replacingAll(_ target: String, with replacement: String) -> String {
        let t = Array(target.utf8)
        guard let first = t.first else { return self }
        let s = Array(utf8)
        var out: [UInt8] = []
        out.reserveCapacity(s.count)
        var matched = false
        var i = 0
        while i < s.count {
            if s[i] == first, i + t.count <= s.count, s[i..<(i + t.count)].elementsEqual(t) {
                out.append(contentsOf: replacement.utf8)
                i += t.count
                matched = true
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return matched ? String(decoding: out, as: UTF8.self) : self
    }
}
