/// One bit per object of every kind, with a count per kind: which objects are dirty (source)
/// or have arrived (destination).
struct IBObjectBitmap: Sendable {
    private var words: [[UInt64]]
    private(set) var counts: [Int]

    init(shape: IBVFShape) {
        words = IBObjectKind.allCases.map { Array(repeating: 0, count: (shape.count(of: $0) + 63) / 64) }
        counts = Array(repeating: 0, count: IBObjectKind.allCases.count)
    }

    /// A bitmap of no objects (no allocation): a placeholder while the real one is moved out.
    init() {
        words = []
        counts = []
    }

    var total: Int { counts.reduce(0, +) }

    func contains(_ kind: IBObjectKind, _ index: Int) -> Bool {
        words[kind.ordinal][index >> 6] & (1 << UInt64(index & 63)) != 0
    }

    /// Sets the bit; returns whether it was clear.
    @discardableResult
    mutating func insert(_ kind: IBObjectKind, _ index: Int) -> Bool {
        let mask: UInt64 = 1 << UInt64(index & 63)
        let ordinal = kind.ordinal
        guard words[ordinal][index >> 6] & mask == 0 else { return false }
        words[ordinal][index >> 6] |= mask
        counts[ordinal] += 1
        return true
    }

    /// Visits set bits in table order, clearing each before `body` sees it; stops when `body`
    /// returns false.
    mutating func removeEach(_ body: (IBObjectKind, Int) -> Bool) {
        for kind in IBObjectKind.allCases where counts[kind.ordinal] > 0 {
            let ordinal = kind.ordinal
            for wordIndex in words[ordinal].indices {
                while words[ordinal][wordIndex] != 0 {
                    let bit = words[ordinal][wordIndex].trailingZeroBitCount
                    words[ordinal][wordIndex] &= words[ordinal][wordIndex] - 1
                    counts[ordinal] -= 1
                    if !body(kind, wordIndex << 6 | bit) { return }
                }
            }
        }
    }

    /// The first `limit` objects whose bit is clear, among the first `count(kind)` of each kind.
    func firstMissing(shape: IBVFShape, limit: Int) -> [(IBObjectKind, Int)] {
        var missing: [(IBObjectKind, Int)] = []
        for kind in IBObjectKind.allCases where counts[kind.ordinal] < shape.count(of: kind) {
            for index in 0..<shape.count(of: kind) where !contains(kind, index) {
                missing.append((kind, index))
                if missing.count == limit { return missing }
            }
        }
        return missing
    }
}
