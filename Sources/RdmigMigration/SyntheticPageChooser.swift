/// Picks the next page a synthetic writer writes. Writer `w` of `n` owns the pages
/// p < workingSet with p % n == w, so no two writers ever write the same page and a page's
/// version counter has one owner.
struct SyntheticPageChooser: Sendable {
    let writer: Int
    let writers: Int
    /// Pages this writer owns: indices k in 0..<owned stand for page k * writers + writer.
    let owned: Int
    /// Owned pages below the hot boundary (hot-cold only).
    let hotOwned: Int
    let pattern: WritePattern
    let hotWriteFraction: Double
    private var random: UInt64
    private var cursor = -1

    init(writer: Int, writers: Int, workingSetPages: Int, pattern: WritePattern,
         hotFraction: Double, hotWriteFraction: Double, seed: UInt64) {
        self.writer = writer
        self.writers = writers
        owned = SyntheticPageChooser.ownedPages(below: workingSetPages, writer: writer, writers: writers)
        let hotPages = max(1, Int((Double(workingSetPages) * hotFraction).rounded()))
        hotOwned = SyntheticPageChooser.ownedPages(below: hotPages, writer: writer, writers: writers)
        self.pattern = pattern
        self.hotWriteFraction = hotWriteFraction
        random = seed ^ (UInt64(writer + 1) &* 0x9E37_79B9_7F4A_7C15)
    }

    static func ownedPages(below limit: Int, writer: Int, writers: Int) -> Int {
        limit > writer ? (limit - writer + writers - 1) / writers : 0
    }

    /// SplitMix64: tiny state, good enough statistics for choosing pages.
    @inline(__always)
    private mutating func nextRandom() -> UInt64 {
        random &+= 0x9E37_79B9_7F4A_7C15
        var z = random
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    private mutating func below(_ bound: Int) -> Int {
        Int(nextRandom() % UInt64(bound))
    }

    /// The next page, or nil when this writer owns none.
    @inline(__always)
    mutating func next() -> Int? {
        guard owned > 0 else { return nil }
        let slot: Int
        switch pattern {
        case .uniform:
            slot = below(owned)
        case .sequential:
            cursor = cursor + 1 == owned ? 0 : cursor + 1
            slot = cursor
        case .hotCold:
            if hotOwned == 0 || hotOwned == owned {
                slot = below(owned)
            } else if Double(nextRandom() >> 11) * 0x1p-53 < hotWriteFraction {
                slot = below(hotOwned)
            } else {
                slot = hotOwned + below(owned - hotOwned)
            }
        }
        return slot * writers + writer
    }
}
