import Synchronization

/// The trackers' side of dirty logging: one bit per page, set concurrently by whoever sees a
/// write (the synthetic guest's writers, the userfaultfd handler thread) and drained by the
/// sender. Marking is one atomic OR; draining swaps each word with zero, so a mark that races
/// with a drain lands either in this collection or the next one, never in neither.
final class AtomicPageBitmap: @unchecked Sendable {
    let pageCount: Int
    let wordCount: Int
    private let words: UnsafeMutablePointer<Atomic<UInt64>>

    init(pageCount: Int) {
        self.pageCount = pageCount
        wordCount = (pageCount + 63) / 64
        words = .allocate(capacity: max(wordCount, 1))
        for index in 0..<max(wordCount, 1) { (words + index).initialize(to: Atomic<UInt64>(0)) }
    }

    deinit {
        words.deinitialize(count: max(wordCount, 1))
        words.deallocate()
    }

    /// Release ordering: a drainer that acquires the bit also sees the page content written
    /// before the mark (writers mark after writing).
    @inline(__always)
    func mark(_ page: Int) {
        words[page >> 6].bitwiseOr(1 << UInt64(page & 63), ordering: .releasing)
    }

    @inline(__always)
    func isMarked(_ page: Int) -> Bool {
        words[page >> 6].load(ordering: .acquiring) & (1 << UInt64(page & 63)) != 0
    }

    /// Moves every marked page into `bitmap` (OR) and clears the marks. Returns how many
    /// pages were marked.
    @discardableResult
    func drain(into bitmap: inout DirtyBitmap) -> Int {
        precondition(bitmap.pageCount == pageCount, "bitmap of \(bitmap.pageCount) pages for a log of \(pageCount)")
        var drained = 0
        for index in 0..<wordCount {
            // A load first keeps clean words out of the exclusive cache-line state the
            // writers would otherwise have to steal back.
            if words[index].load(ordering: .relaxed) == 0 { continue }
            let bits = words[index].exchange(0, ordering: .acquiring)
            drained &+= bits.nonzeroBitCount
            bitmap.formUnion(word: index, with: bits)
        }
        return drained
    }

    /// Like `drain(into:)`, and calls `onRun` with each maximal run of pages this drain took
    /// (the userfaultfd log re-protects exactly those). Runs are reported in increasing order;
    /// a throw stops the drain, leaving the remaining marks for the next one.
    @discardableResult
    func drain<E: Error>(into bitmap: inout DirtyBitmap, onRun: (Range<Int>) throws(E) -> Void) throws(E) -> Int {
        precondition(bitmap.pageCount == pageCount, "bitmap of \(bitmap.pageCount) pages for a log of \(pageCount)")
        var drained = 0
        var runStart = -1
        var runEnd = -1
        for index in 0..<wordCount {
            if words[index].load(ordering: .relaxed) == 0 { continue }
            var bits = words[index].exchange(0, ordering: .acquiring)
            if index == wordCount - 1, pageCount & 63 != 0 { bits &= (1 << UInt64(pageCount & 63)) - 1 }
            drained &+= bits.nonzeroBitCount
            bitmap.formUnion(word: index, with: bits)
            let base = index << 6
            while bits != 0 {
                let start = bits.trailingZeroBitCount
                let ones = (~(bits >> UInt64(start))).trailingZeroBitCount
                let first = base + start
                if first == runEnd {
                    runEnd = first + ones
                } else {
                    if runStart >= 0 { try onRun(runStart..<runEnd) }
                    runStart = first
                    runEnd = first + ones
                }
                bits = start + ones >= 64 ? 0 : bits & ~(((1 << UInt64(ones)) - 1) << UInt64(start))
            }
        }
        if runStart >= 0 { try onRun(runStart..<runEnd) }
        return drained
    }

    /// Drops every mark.
    func clear() {
        for index in 0..<wordCount { words[index].store(0, ordering: .releasing) }
    }

    /// Marks (`set`) or unmarks every page of `pages`, a word at a time.
    func update(_ pages: Range<Int>, set: Bool) {
        forEachWord(of: pages) { index, mask in
            if set {
                words[index].bitwiseOr(mask, ordering: .releasing)
            } else {
                words[index].bitwiseAnd(~mask, ordering: .releasing)
            }
        }
    }

    /// How many pages of `pages` are marked.
    func markedCount(in pages: Range<Int>) -> Int {
        var count = 0
        forEachWord(of: pages) { index, mask in count += (words[index].load(ordering: .acquiring) & mask).nonzeroBitCount }
        return count
    }

    /// Calls `body` with each word index that `pages` covers and the mask of its pages there.
    @inline(__always)
    private func forEachWord(of pages: Range<Int>, _ body: (Int, UInt64) -> Void) {
        precondition(pages.lowerBound >= 0 && pages.upperBound <= pageCount, "pages \(pages) outside 0..<\(pageCount)")
        var page = pages.lowerBound
        while page < pages.upperBound {
            let bit = page & 63
            let count = min(64 - bit, pages.upperBound - page)
            let mask = count == 64 ? UInt64.max : ((1 << UInt64(count)) - 1) << UInt64(bit)
            body(page >> 6, mask)
            page += count
        }
    }
}
