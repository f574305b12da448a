/// One bit per page of a guest memory region: set means the page must be (re)sent.
///
/// A plain value owned by one thread (the sender); the trackers that run concurrently with
/// the guest keep their own atomic bitmap and move it into a `DirtyBitmap` with
/// `DirtyLog.collectAndClear(into:)`. Storage is allocated once, at `init`; inserting,
/// iterating and clearing never allocate, so the page channel can use it on the hot path.
public struct DirtyBitmap: Sendable, Equatable, CustomStringConvertible {
    public let pageCount: Int
    @usableFromInline var words: [UInt64]

    /// An empty bitmap for `pageCount` pages.
    public init(pageCount: Int) {
        precondition(pageCount >= 0, "negative page count \(pageCount)")
        self.pageCount = pageCount
        words = [UInt64](repeating: 0, count: (pageCount + 63) / 64)
    }

    /// A bitmap with every page set: the first pre-copy pass sends all of memory.
    public static func full(pageCount: Int) -> DirtyBitmap {
        var bitmap = DirtyBitmap(pageCount: pageCount)
        bitmap.insertAll()
        return bitmap
    }

    public var wordCount: Int { words.count }

    @inlinable
    public func contains(_ page: Int) -> Bool {
        precondition(page >= 0 && page < pageCount, "page \(page) outside 0..<\(pageCount)")
        return words[page >> 6] & (1 << UInt64(page & 63)) != 0
    }

    @inlinable
    public mutating func insert(_ page: Int) {
        precondition(page >= 0 && page < pageCount, "page \(page) outside 0..<\(pageCount)")
        words[page >> 6] |= 1 << UInt64(page & 63)
    }

    @inlinable
    public mutating func remove(_ page: Int) {
        precondition(page >= 0 && page < pageCount, "page \(page) outside 0..<\(pageCount)")
        words[page >> 6] &= ~(1 << UInt64(page & 63))
    }

    /// Sets every page in `pages` (clamped to the bitmap).
    public mutating func insert(_ pages: Range<Int>) {
        let lower = max(pages.lowerBound, 0)
        let upper = min(pages.upperBound, pageCount)
        guard lower < upper else { return }
        var page = lower
        while page < upper {
            let word = page >> 6
            let bit = page & 63
            let span = min(64 - bit, upper - page)
            let mask: UInt64 = span == 64 ? ~0 : ((1 << UInt64(span)) - 1) << UInt64(bit)
            words[word] |= mask
            page += span
        }
    }

    public mutating func insertAll() {
        insert(0..<pageCount)
    }

    public mutating func removeAll() {
        for index in words.indices { words[index] = 0 }
    }

    /// ORs a whole 64-page word in (trackers hand over their atomic words this way).
    /// Bits past `pageCount` in the last word are dropped.
    @inlinable
    public mutating func formUnion(word index: Int, with bits: UInt64) {
        var value = bits
        if index == words.count - 1, pageCount & 63 != 0 {
            value &= (1 << UInt64(pageCount & 63)) - 1
        }
        words[index] |= value
    }

    @inlinable
    public func word(at index: Int) -> UInt64 { words[index] }

    /// The pages set in both.
    public func intersection(_ other: DirtyBitmap) -> DirtyBitmap {
        precondition(other.pageCount == pageCount, "bitmaps of different regions")
        var result = self
        for index in result.words.indices { result.words[index] &= other.words[index] }
        return result
    }

    /// The pages set here and not in `other`.
    public func subtracting(_ other: DirtyBitmap) -> DirtyBitmap {
        precondition(other.pageCount == pageCount, "bitmaps of different regions")
        var result = self
        for index in result.words.indices { result.words[index] &= ~other.words[index] }
        return result
    }

    public mutating func formUnion(_ other: DirtyBitmap) {
        precondition(other.pageCount == pageCount, "bitmaps of \(pageCount) and \(other.pageCount) pages")
        for index in words.indices { words[index] |= other.words[index] }
    }

    /// The number of set pages (population count, one instruction per word).
    public var count: Int {
        var total = 0
        for word in words { total &+= word.nonzeroBitCount }
        return total
    }

    public var isEmpty: Bool {
        for word in words where word != 0 { return false }
        return true
    }

    /// Calls `body` with each set page in increasing order. Skips clear words in one compare
    /// and walks set bits with trailing-zero counts, so a sparse 1 GiB bitmap (4096 words)
    /// costs a few microseconds.
    @inlinable
    public func forEachPage(_ body: (Int) throws -> Void) rethrows {
        for index in words.indices {
            var word = words[index]
            while word != 0 {
                let bit = word.trailingZeroBitCount
                try body(index << 6 | bit)
                word &= word &- 1
            }
        }
    }

    /// Calls `body` with each maximal run of consecutive set pages, in increasing order,
    /// split so that no run is longer than `maximumLength` pages (the page channel's largest
    /// single write; QEMU's RDMA migration merges writes up to 2 MiB the same way).
    @inlinable
    public func forEachRun(maximumLength: Int = .max, _ body: (Range<Int>) throws -> Void) rethrows {
        precondition(maximumLength > 0, "maximumLength must be positive")
        var runStart = -1
        var runEnd = -1
        for index in words.indices {
            var word = words[index]
            let base = index << 6
            while word != 0 {
                let start = word.trailingZeroBitCount
                // The run of ones starting at `start`: count trailing ones of the shifted word.
                let shifted = word >> UInt64(start)
                let ones = (~shifted).trailingZeroBitCount
                let first = base + start
                let end = first + ones
                if first == runEnd {
                    runEnd = end
                } else {
                    if runStart >= 0 { try DirtyBitmap.emit(runStart..<runEnd, maximumLength, body) }
                    runStart = first
                    runEnd = end
                }
                word = ones + start >= 64 ? 0 : word & ~(((1 << UInt64(ones)) - 1) << UInt64(start))
            }
        }
        if runStart >= 0 { try DirtyBitmap.emit(runStart..<runEnd, maximumLength, body) }
    }

    @usableFromInline
    static func emit(_ run: Range<Int>, _ maximumLength: Int, _ body: (Range<Int>) throws -> Void) rethrows {
        var start = run.lowerBound
        while start < run.upperBound {
            let end = start + min(maximumLength, run.upperBound - start)
            try body(start..<end)
            start = end
        }
    }

    /// The set pages as an array (tests and reports; allocates).
    public var pages: [Int] {
        var result: [Int] = []
        result.reserveCapacity(count)
        forEachPage { result.append($0) }
        return result
    }

    /// The runs as an array (tests and reports; allocates).
    public func runs(maximumLength: Int = .max) -> [Range<Int>] {
        var result: [Range<Int>] = []
        forEachRun(maximumLength: maximumLength) { result.append($0) }
        return result
    }

    public var description: String { "DirtyBitmap(\(count) of \(pageCount) pages)" }
}
