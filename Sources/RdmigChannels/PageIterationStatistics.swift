/// What one pre-copy (or stop-and-copy) iteration of the page channel did.
public struct PageIterationStatistics: Sendable, Equatable, CustomStringConvertible {
    public var iteration: UInt32
    /// Pages written into the peer's windows.
    public var pagesWritten: UInt64 = 0
    /// Pages found all zero and sent as ZERO_PAGES runs instead.
    public var zeroPages: UInt64 = 0
    /// Bytes written (pagesWritten × page size).
    public var bytesWritten: UInt64 = 0
    /// RDMA writes posted: fewer than pages when runs were coalesced.
    public var writesPosted: UInt64 = 0
    /// ZERO_PAGES messages sent.
    public var zeroPageMessages: UInt64 = 0
    /// Times the channel waited for send-queue room (writes in flight at the reservation).
    public var sendQueueWaits: UInt64 = 0
    /// Time spent scanning pages that turned out all zero (timed per run of zero pages, so
    /// the clock is read at run boundaries, not per page). Not link time: the convergence
    /// policy takes it out of the pass's time before measuring bandwidth.
    public var zeroScanTime: Duration = .zero
    /// From `beginIteration` until the last write completed.
    public var elapsed: Duration = .zero

    public init(iteration: UInt32) { self.iteration = iteration }

    /// Adds another channel's share of the same iteration, sent at the same time: counts add
    /// up, times are the longer of the two (the channels ran in parallel).
    public mutating func add(parallel other: PageIterationStatistics) {
        pagesWritten += other.pagesWritten
        zeroPages += other.zeroPages
        bytesWritten += other.bytesWritten
        writesPosted += other.writesPosted
        zeroPageMessages += other.zeroPageMessages
        sendQueueWaits += other.sendQueueWaits
        zeroScanTime = max(zeroScanTime, other.zeroScanTime)
        elapsed = max(elapsed, other.elapsed)
    }

    public var description: String {
        "iteration \(iteration): \(pagesWritten) pages (\(bytesWritten) B) in \(writesPosted) writes, \(zeroPages) zero pages in \(zeroPageMessages) messages, \(elapsed)"
    }
}
