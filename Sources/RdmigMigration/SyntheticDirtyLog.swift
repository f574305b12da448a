/// The synthetic guest's own dirty log: its writers mark each page after writing it (one
/// atomic OR), and collect-and-clear swaps the marks out word by word. A write racing with
/// a collection is in this collection or the next: the writer stores the content before the
/// mark, and the mark is either drained now or left for the next drain.
public final class SyntheticDirtyLog: DirtyLog, @unchecked Sendable {
    public let pageCount: Int
    public let pageSize: Int
    let marks: AtomicPageBitmap

    public init(pageCount: Int, pageSize: Int) {
        self.pageCount = pageCount
        self.pageSize = pageSize
        marks = AtomicPageBitmap(pageCount: pageCount)
    }

    public func start() throws(DirtyLogError) {
        marks.clear()
    }

    @discardableResult
    public func collectAndClear(into bitmap: inout DirtyBitmap) throws(DirtyLogError) -> Int {
        marks.drain(into: &bitmap)
    }

    public func stop() {}

    @inline(__always)
    func mark(_ page: Int) {
        marks.mark(page)
    }
}
