import RdmigTransport

/// Writes dirty guest pages straight from registered guest memory into the peer's windows.
///
/// Per iteration: `beginIteration`, then `write(_:of:)` for each region's dirty runs, then
/// `endIteration`. Contiguous dirty pages are coalesced into one RDMA WRITE of up to
/// `maxWriteBytes` (QEMU's migration/rdma.c merges up to 2 MiB the same way); many writes are
/// in flight (up to the channel's send-queue reservation), one in `signalInterval` is
/// signalled (perftest's cq_mod). All-zero pages are not written: they are collected into
/// ZERO_PAGES runs on the control channel and the destination zeroes them
/// (`applyZeroPages`).
///
/// **ITERATION_DONE ordering.** `endIteration` posts the last write signalled and sends
/// ITERATION_DONE right behind it, without waiting for the write's completion: on a reliable
/// connection the responder executes requests in order, so when the SEND's receive completes
/// on the destination every earlier write's data is in its memory (InfiniBand RC ordering;
/// the tcp backend keeps it by handling one ordered byte stream). A write that fails breaks
/// the connection, so the SEND behind it is flushed, never delivered. `endIteration` then
/// waits for the last write's completion to report errors and the elapsed time; waiting
/// before sending would add a round trip to every iteration, including the one inside the
/// guest's downtime.
///
/// **Zero pages across iterations.** A page zeroed by iteration i's markers and written again
/// by iteration i+1 must be zeroed before the write lands, or the zeroing would wipe the new
/// contents. After an iteration with zero pages the destination answers ZERO_PAGES_APPLIED
/// once it has applied them; pass it to `zeroPagesApplied(through:)`. `beginIteration`
/// refuses to start writing before that.
///
/// One thread drives a page channel.
public final class PageChannel: @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Largest single write of coalesced pages.
        public var maxWriteBytes: Int = 2 * 1024 * 1024
        /// Send-queue slots reserved (writes in flight); nil: what the connection has left
        /// after the control channel and two streams (see `defaultSendSlots`).
        public var sendSlots: Int?
        /// Signal one write in this many; nil: the connection's effective signal interval,
        /// capped at half the reservation so the pipeline never drains while waiting.
        public var signalInterval: Int?
        /// Scan pages for all-zero content and send those as markers.
        public var detectZeroPages = true
        /// How long a write may wait for send-queue room (the peer acknowledging earlier
        /// writes) before the iteration fails.
        public var completionTimeout: Duration = .seconds(60)

        public init() {}
    }

    /// One guest memory region on this side and its window on the peer.
    public struct Region: @unchecked Sendable {
        public var id: UInt32
        /// The region's memory, inside `registration`.
        public var memory: UnsafeRawBufferPointer
        public var registration: MemoryRegistration
        public var peerWindow: RemoteWindow
        public var pageSize: Int

        public init(id: UInt32, memory: UnsafeRawBufferPointer, registration: MemoryRegistration,
                    peerWindow: RemoteWindow, pageSize: Int) throws(ChannelError) {
            guard pageSize >= 64, pageSize & (pageSize - 1) == 0 else {
                throw .invalidArgument(detail: "region \(id): page size \(pageSize) is not a power of two of at least 64 bytes")
            }
            guard memory.count % pageSize == 0, let base = memory.baseAddress else {
                throw .invalidArgument(detail: "region \(id): \(memory.count) bytes are not whole \(pageSize)-byte pages")
            }
            let address = UInt64(UInt(bitPattern: base))
            guard address >= registration.address,
                  address + UInt64(memory.count) <= registration.address + UInt64(registration.length) else {
                throw .invalidArgument(detail: "region \(id): memory at 0x\(String(address, radix: 16)) (\(memory.count) B) is not inside its registration at 0x\(String(registration.address, radix: 16)) (\(registration.length) B)")
            }
            guard peerWindow.length >= UInt64(memory.count) else {
                throw .invalidArgument(detail: "region \(id): the peer's \(peerWindow) is smaller than the region's \(memory.count) bytes")
            }
            self.id = id
            self.memory = memory
            self.registration = registration
            self.peerWindow = peerWindow
            self.pageSize = pageSize
        }

        public var pageCount: UInt64 { UInt64(memory.count / pageSize) }
        var registrationOffset: Int { Int(UInt64(UInt(bitPattern: memory.baseAddress!)) - registration.address) }
    }

    /// Send-queue slots the page channel takes by default: the queue minus the control
    /// channel's (send slots + grants) and room for two streams.
    public static func defaultSendSlots(sendQueueDepth: Int) -> Int {
        max(sendQueueDepth / 4, sendQueueDepth - 13 - 2 * 37)
    }

    public let router: CompletionRouter
    public let control: ControlChannel
    public let channel: ChannelID
    public let configuration: Configuration
    /// When set, no wait for write completions goes past it (the source's switchover budget:
    /// a link that stops moving must not keep the guest paused for a whole completion timeout).
    public var completionDeadline: ContinuousClock.Instant?

    private let inbox: CompletionInbox
    private var account: SendQueueAccount
    private let zeroRuns: UnsafeMutableBufferPointer<PageRun>
    private var zeroRunCount = 0
    private var zeroRegionID: UInt32 = 0

    private var statistics = PageIterationStatistics(iteration: 0)
    private var started: ContinuousClock.Instant?
    private var queued: (local: LocalSlice, remote: RemoteSlice)?
    /// The newest iteration that sent zero pages, and the newest the destination applied.
    private var zeroPagesPending: UInt32?
    private var zeroPagesAppliedThrough: UInt32?

    public init(router: CompletionRouter, control: ControlChannel, channel: ChannelID = .pages,
                configuration: Configuration = Configuration()) throws(ChannelError) {
        guard channel.rawValue >= 2, channel.rawValue < 0x80 else {
            throw .invalidArgument(detail: "page channel id \(channel.rawValue) is reserved: use 2-127")
        }
        guard configuration.maxWriteBytes >= 64 else {
            throw .invalidArgument(detail: "maximum write size \(configuration.maxWriteBytes) is smaller than a page")
        }
        let options = router.connection.options
        let slots = configuration.sendSlots ?? Self.defaultSendSlots(sendQueueDepth: options.sendQueueDepth)
        let interval = configuration.signalInterval ?? min(options.effectiveSignalInterval, max(1, slots / 2))
        self.router = router
        self.control = control
        self.channel = channel
        self.configuration = configuration
        account = SendQueueAccount(capacity: slots, signalInterval: interval)
        let runCapacity = (control.maximumPayloadSize - MigrationMessage.ZeroPages.headerSize) / PageRun.minimumEncodedSize
        guard runCapacity >= 1 else {
            throw .invalidArgument(detail: "control frames of \(control.frameSize) bytes cannot carry a ZERO_PAGES run")
        }
        zeroRuns = .allocate(capacity: runCapacity)
        zeroRuns.initialize(repeating: PageRun(firstPage: 0, count: 0))
        do {
            inbox = try router.register(channel, sendSlots: slots, receives: 0)
        } catch {
            zeroRuns.deallocate()
            throw error
        }
    }

    deinit {
        zeroRuns.deallocate()
    }

    /// The destination applied every ZERO_PAGES marker up to and including `iteration`
    /// (it said so with ZERO_PAGES_APPLIED).
    public func zeroPagesApplied(through iteration: UInt32) {
        if zeroPagesAppliedThrough.map({ iteration > $0 }) ?? true { zeroPagesAppliedThrough = iteration }
    }

    /// True when the last iteration with zero pages still waits for ZERO_PAGES_APPLIED.
    public var awaitsZeroPagesApplied: Bool {
        guard let pending = zeroPagesPending else { return false }
        return zeroPagesAppliedThrough.map { $0 < pending } ?? true
    }

    public func beginIteration(_ iteration: UInt32) throws(ChannelError) {
        guard started == nil else {
            throw .invalidArgument(detail: "page iteration \(statistics.iteration) is still open: end it before beginning \(iteration)")
        }
        if awaitsZeroPagesApplied {
            throw .protocolViolation(detail: "iteration \(iteration) cannot write pages before the destination confirms it zeroed the pages of iteration \(zeroPagesPending!) (ZERO_PAGES_APPLIED): wait for that message first")
        }
        statistics = PageIterationStatistics(iteration: iteration)
        started = .now
    }

    /// Writes the pages of `runs` of `region` (page indices within the region; runs may come
    /// in any order, adjacent ones are coalesced).
    public func write<Runs: Sequence>(_ runs: Runs, of region: Region) throws(ChannelError) where Runs.Element == PageRun {
        try beginWriting(region)
        let pageSize = region.pageSize
        let pageCount = region.pageCount
        let maxPages = UInt64(max(1, configuration.maxWriteBytes / pageSize))
        let base = UnsafeRawPointer(region.memory.baseAddress!)
        var writeStart: UInt64 = 0
        var writeCount: UInt64 = 0
        var zeroRunStarted: ContinuousClock.Instant?
        defer { if let zeroRunStarted { statistics.zeroScanTime += .now - zeroRunStarted } }
        for run in runs {
            guard run.count > 0 else { continue }
            guard run.firstPage < pageCount, run.count <= pageCount - run.firstPage else {
                throw .invalidArgument(detail: "\(run) is outside region \(region.id) of \(pageCount) pages")
            }
            var page = run.firstPage
            while page < run.endPage {
                if configuration.detectZeroPages, Self.isZero(base + Int(page) * pageSize, pageSize) {
                    // Posting may wait for the link: that is link time, so it stays out of
                    // the zero-scan clock (which starts after it, and stops for a send).
                    if writeCount > 0 {
                        try queueWrite(region, firstPage: writeStart, count: writeCount)
                        writeCount = 0
                    }
                    if zeroRunStarted == nil { zeroRunStarted = .now }
                    try addZeroPage(page, scanClock: &zeroRunStarted)
                    page += 1
                    continue
                }
                if let started = zeroRunStarted {
                    statistics.zeroScanTime += .now - started
                    zeroRunStarted = nil
                }
                if writeCount > 0, writeStart + writeCount == page, writeCount < maxPages {
                    writeCount += 1
                } else {
                    if writeCount > 0 { try queueWrite(region, firstPage: writeStart, count: writeCount) }
                    writeStart = page
                    writeCount = 1
                }
                page += 1
            }
        }
        if writeCount > 0 { try queueWrite(region, firstPage: writeStart, count: writeCount) }
    }

    /// Sends `runs` as zero pages without reading them: pages the caller knows hold zeros
    /// (never-populated anonymous memory). As with scanned zero pages, the destination
    /// zeroes them when the ZERO_PAGES message arrives.
    public func writeKnownZero<Runs: Sequence>(_ runs: Runs, of region: Region) throws(ChannelError) where Runs.Element == PageRun {
        try beginWriting(region)
        let pageCount = region.pageCount
        var noClock: ContinuousClock.Instant?
        for run in runs where run.count > 0 {
            guard run.firstPage < pageCount, run.count <= pageCount - run.firstPage else {
                throw .invalidArgument(detail: "\(run) is outside region \(region.id) of \(pageCount) pages")
            }
            try addZeroRun(run, scanClock: &noClock)
        }
    }

    /// Writes go to `region` from here on; ZERO_PAGES runs collected for another go first.
    private func beginWriting(_ region: Region) throws(ChannelError) {
        guard started != nil else {
            throw .invalidArgument(detail: "write pages between beginIteration and endIteration")
        }
        if zeroRunCount > 0, zeroRegionID != region.id { try sendZeroRuns() }
        zeroRegionID = region.id
    }

    /// Posts the last write (signalled), sends the remaining ZERO_PAGES runs and
    /// ITERATION_DONE, then waits up to `timeout` for the last write to complete.
    public func endIteration(timeout: Duration = .seconds(60)) throws(ChannelError) -> PageIterationStatistics {
        guard let started else {
            throw .invalidArgument(detail: "endIteration without beginIteration")
        }
        let deadline = ContinuousClock.now + timeout
        try fence()
        try control.send(MigrationMessage.iterationDone(.init(
            iteration: statistics.iteration, pagesWritten: statistics.pagesWritten,
            zeroPages: statistics.zeroPages, bytesWritten: statistics.bytesWritten)), timeout: timeout)
        try drainWrites(deadline: deadline, timeout: timeout,
                        operation: "ending page iteration \(statistics.iteration): waiting for the last writes to complete")
        if statistics.zeroPages > 0 { zeroPagesPending = statistics.iteration }
        statistics.elapsed = ContinuousClock.now - started
        self.started = nil
        return statistics
    }

    /// Posts every write queued so far (the last one signalled) and sends the pending
    /// ZERO_PAGES runs, so that a control message sent next reaches the peer after all of
    /// them have landed and been applied — the same RC ordering ITERATION_DONE relies on.
    /// The migration source sends TOUCHED_CHUNKS behind a fence every few MiB, so the
    /// destination hashes an iteration's pages while the rest are still on the wire (and
    /// while the ones it hashes are still in its caches).
    public func fence() throws(ChannelError) {
        guard started != nil else {
            throw .invalidArgument(detail: "fence pages between beginIteration and endIteration")
        }
        if let last = queued {
            queued = nil
            try post(last, forceSignal: true)
        }
        if zeroRunCount > 0 { try sendZeroRuns() }
    }

    /// Measures what the link moves: WRITEs of `writeBytes` covering `bytes` of `region`'s
    /// memory into the same bytes of the peer's window, as many in flight as the channel
    /// reserves, timed from the first post to the last completion. Between iterations only:
    /// what lands is overwritten by the next iteration, which sends every page it covers
    /// (written or as a zero marker). Writes must keep completing as in a pass (the progress
    /// timeout, `completionTimeout`); `timeout` bounds the whole burst. Returns the time it took.
    public func measureLink(_ region: Region, bytes: Range<Int>, writeBytes: Int, timeout: Duration) throws(ChannelError) -> Duration {
        guard started == nil else {
            throw .invalidArgument(detail: "measure the link between iterations, not inside iteration \(statistics.iteration)")
        }
        guard bytes.lowerBound >= 0, bytes.upperBound <= region.memory.count, writeBytes > 0 else {
            throw .invalidArgument(detail: "bytes \(bytes) are outside region \(region.id) of \(region.memory.count) bytes")
        }
        let begin = ContinuousClock.now
        let deadline = begin + timeout
        var offset = bytes.lowerBound
        while offset < bytes.upperBound {
            let length = min(writeBytes, bytes.upperBound - offset)
            let write = (local: region.registration.slice(offset: region.registrationOffset + offset, length: length),
                         remote: region.peerWindow.slice(offset: UInt64(offset), length: length))
            offset += length
            try post(write, forceSignal: offset >= bytes.upperBound)
        }
        try drainWrites(deadline: deadline, timeout: timeout, operation: "measuring the link: waiting for the burst's writes to complete")
        return .now - begin
    }

    /// Waits until every write posted has completed. Writes must keep completing: no
    /// completion for `completionTimeout` (the progress timeout) fails the wait, however long
    /// the whole drain may take; nor may it go past `deadline` (`timeout` from its start) or
    /// `completionDeadline`.
    private func drainWrites(deadline: ContinuousClock.Instant, timeout: Duration, operation: String) throws(ChannelError) {
        func progressDeadline() -> ContinuousClock.Instant {
            let next = ContinuousClock.now + configuration.completionTimeout
            return min(next, completionDeadline ?? next, deadline)
        }
        var limit = progressDeadline()
        while !account.isIdle {
            let completion = try router.wait(on: inbox, until: limit, timeout: limit == deadline ? timeout : configuration.completionTimeout,
                                             operation: operation)
            account.complete(sequence: WorkRequestID.sequence(of: completion.id))
            limit = progressDeadline()
        }
    }

    /// Bytes of pages written so far in the open iteration (zero pages not counted).
    public var bytesWrittenThisIteration: UInt64 { statistics.bytesWritten }

    /// Closes the channel (completions for it are dropped from now on).
    public func close() {
        router.unregister(channel)
    }

    // MARK: - Writes

    @inline(__always)
    private func queueWrite(_ region: Region, firstPage: UInt64, count: UInt64) throws(ChannelError) {
        let offset = Int(firstPage) * region.pageSize
        let length = Int(count) * region.pageSize
        let write = (local: region.registration.slice(offset: region.registrationOffset + offset, length: length),
                     remote: region.peerWindow.slice(offset: UInt64(offset), length: length))
        statistics.pagesWritten += count
        statistics.bytesWritten += UInt64(length)
        // One write is held back so that the iteration's last write can be posted signalled.
        if let previous = queued { try post(previous, forceSignal: false) }
        queued = write
    }

    @inline(__always)
    private func post(_ write: (local: LocalSlice, remote: RemoteSlice), forceSignal: Bool) throws(ChannelError) {
        if !account.hasRoom {
            statistics.sendQueueWaits += 1
            var deadline = ContinuousClock.now + configuration.completionTimeout
            if let completionDeadline, completionDeadline < deadline { deadline = completionDeadline }
            while !account.hasRoom {
                let completion = try router.wait(on: inbox, until: deadline, timeout: configuration.completionTimeout,
                                                 operation: "writing pages: waiting for the peer to complete earlier writes")
                account.complete(sequence: WorkRequestID.sequence(of: completion.id))
            }
        }
        let (sequence, signaled) = account.claim(forceSignal: forceSignal)
        let id = WorkRequestID.make(channel, sequence)
        try router.post { connection throws(TransportError) in
            try connection.postWrite(write.local, to: write.remote, id: id, signaled: signaled, immediate: nil)
        }
        statistics.writesPosted += 1
    }

    // MARK: - Zero pages

    @inline(__always)
    private func addZeroPage(_ page: UInt64, scanClock: inout ContinuousClock.Instant?) throws(ChannelError) {
        try addZeroRun(PageRun(firstPage: page, count: 1), scanClock: &scanClock)
    }

    /// Appends `run` to the ZERO_PAGES runs (merged with the last when adjacent), sending
    /// them first when they are full; the send stops the zero-scan clock (link time).
    @inline(__always)
    private func addZeroRun(_ run: PageRun, scanClock: inout ContinuousClock.Instant?) throws(ChannelError) {
        statistics.zeroPages += run.count
        if zeroRunCount > 0, zeroRuns[zeroRunCount - 1].endPage == run.firstPage {
            zeroRuns[zeroRunCount - 1].count += run.count
            return
        }
        if zeroRunCount == zeroRuns.count {
            if let started = scanClock {
                statistics.zeroScanTime += .now - started
                scanClock = nil
            }
            try sendZeroRuns()
        }
        zeroRuns[zeroRunCount] = run
        zeroRunCount += 1
    }

    private func sendZeroRuns() throws(ChannelError) {
        let frame = ZeroPagesFrame(iteration: statistics.iteration, regionID: zeroRegionID,
                                   runs: UnsafeBufferPointer(rebasing: zeroRuns[..<zeroRunCount]))
        try control.send(frame)
        zeroRunCount = 0
        statistics.zeroPageMessages += 1
    }

    /// True when `size` bytes (a multiple of 64) at `page` are all zero. Eight words per step:
    /// a page with data usually differs in its first bytes, so this returns at once for it.
    @inline(__always)
    static func isZero(_ page: UnsafeRawPointer, _ size: Int) -> Bool {
        var offset = 0
        while offset < size {
            let word = page.load(fromByteOffset: offset, as: UInt64.self)
                | page.load(fromByteOffset: offset + 8, as: UInt64.self)
                | page.load(fromByteOffset: offset + 16, as: UInt64.self)
                | page.load(fromByteOffset: offset + 24, as: UInt64.self)
                | page.load(fromByteOffset: offset + 32, as: UInt64.self)
                | page.load(fromByteOffset: offset + 40, as: UInt64.self)
                | page.load(fromByteOffset: offset + 48, as: UInt64.self)
                | page.load(fromByteOffset: offset + 56, as: UInt64.self)
            if word != 0 { return false }
            offset += 64
        }
        return true
    }

    // MARK: - Destination side

    /// Zeroes the pages a ZERO_PAGES message names in `memory` (the destination's copy of the
    /// region), after checking every run lies inside it. Pages already zero are left
    /// untouched, so never-written memory is not faulted in. Returns the pages named.
    @discardableResult
    public static func applyZeroPages(_ message: MigrationMessage.ZeroPages, to memory: UnsafeMutableRawBufferPointer,
                                      pageSize: Int) throws(ChannelError) -> UInt64 {
        guard pageSize >= 64, pageSize & (pageSize - 1) == 0, let base = memory.baseAddress else {
            throw .invalidArgument(detail: "page size \(pageSize) is not a power of two of at least 64 bytes")
        }
        let pageCount = UInt64(memory.count / pageSize)
        for run in message.runs {
            guard run.firstPage < pageCount, run.count <= pageCount - run.firstPage else {
                throw .protocolViolation(detail: "ZERO_PAGES for region \(message.regionID) names \(run), outside its \(pageCount) pages")
            }
        }
        var named: UInt64 = 0
        for run in message.runs {
            var page = run.firstPage
            while page < run.endPage {
                let pointer = base + Int(page) * pageSize
                if !isZero(pointer, pageSize) { pointer.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize) }
                page += 1
            }
            named += run.count
        }
        return named
    }
}
