import RdmigChannels
import RdmigSystem
import RdmigTransport

/// One page channel of a migration on the source: its own connection (channel 0 is the
/// migration's session; the others JOIN it), the guest's memory registered on it, a page
/// channel into the destination's windows on that connection, and what the destination
/// acknowledged on it.
///
/// Why each channel carries its own ZERO_PAGES, TOUCHED_CHUNKS and ITERATION_DONE: they are
/// fences, and RC orders a SEND only behind the WRITEs of its own queue pair. A page belongs to
/// exactly one channel (`PageStripes`), so its writes, its zero markers and the fence that
/// tells the destination to hash it all travel in order on one connection.
final class SourcePageLane: @unchecked Sendable {
    let index: Int
    let session: MigrationSession
    let pages: PageChannel
    let pageRegion: PageChannel.Region
    private let registration: MemoryRegistration
    /// The newest iteration the destination applied and hashed on this channel (ZERO_PAGES_APPLIED).
    private(set) var appliedThrough: UInt32?

    init(index: Int, session: MigrationSession, region: GuestMemoryRegion, window: RemoteWindow,
         migration: MigrationConfiguration) throws(MigrationError) {
        self.index = index
        self.session = session
        let memory = region.bytes(of: 0..<region.pageCount)
        do {
            registration = try session.connection.register(memory, access: [.localWrite])
            pageRegion = try PageChannel.Region(id: region.id, memory: UnsafeRawBufferPointer(memory), registration: registration,
                                                peerWindow: window, pageSize: region.pageSize)
            var pageConfiguration = PageChannel.Configuration()
            // "No write completed for this long" is the progress timeout.
            pageConfiguration.completionTimeout = migration.progressTimeout
            pages = try PageChannel(router: session.router, control: session.control, configuration: pageConfiguration)
        } catch {
            throw MigrationError(.layout, "preparing page channel \(index): \(error)")
        }
    }

    func deregister() {
        _ = try? session.connection.deregister(registration)
    }

    /// Records ZERO_PAGES_APPLIED; false for any other message.
    func accept(_ message: MigrationMessage) -> Bool {
        guard case .zeroPagesApplied(let applied) = message else { return false }
        pages.zeroPagesApplied(through: applied.iteration)
        appliedThrough = max(appliedThrough ?? 0, applied.iteration)
        return true
    }

    /// Receives on this channel's session, taking ZERO_PAGES_APPLIED; anything else goes to
    /// `other` (channel 0: the destination's SWITCHOVER_ACKs) or is a protocol error.
    func receive(during: String, limit: WaitLimit, other: ((MigrationMessage) throws(MigrationError) -> Void)?) throws(MigrationError) {
        let message = try session.receive(.precopy, during: during, timeout: limit.timeout)
        if accept(message) { return }
        guard let other else {
            throw MigrationError(.precopy, "unexpected \(message.wireName) on page channel \(index)")
        }
        try other(message)
    }

    /// One iteration of this channel's pages: the zero-page gate, the pages of `work.zeroRuns`
    /// as zero markers without reading them, the writes with a TOUCHED_CHUNKS fence every
    /// `fenceBytes`, the last TOUCHED_CHUNKS (which asks the destination to hash and
    /// acknowledge the iteration), ITERATION_DONE; then, with `awaitApplied`, the destination's
    /// ZERO_PAGES_APPLIED through that iteration (an earlier one: see `SourceMigrationRun.precopyPass`).
    func send(_ work: LaneWork, digester: ChunkDigester, limit: WaitLimit, awaitApplied: UInt32?,
              other: ((MigrationMessage) throws(MigrationError) -> Void)?) throws(MigrationError) -> PageIterationStatistics {
        let iteration = work.iteration, region = pageRegion
        while pages.awaitsZeroPagesApplied {
            try receive(during: "waiting for ZERO_PAGES_APPLIED on page channel \(index)", limit: limit, other: other)
        }
        let pagesPerChunk = digester.chunkSize / region.pageSize
        func chunks(of pages: Range<Int>) -> Range<Int> {
            (pages.lowerBound / pagesPerChunk)..<((pages.upperBound - 1) / pagesPerChunk + 1)
        }
        let during = "writing iteration \(iteration)'s \(work.pageCount) pages on page channel \(index)"
        func onChannel<T>(_ body: () throws(ChannelError) -> T) throws(MigrationError) -> T {
            do { return try body() } catch { throw MigrationError.channel(error, .precopy, during: during) }
        }
        try onChannel { () throws(ChannelError) in try pages.beginIteration(iteration) }
        if !work.zeroRuns.isEmpty {
            // Unread on both counts: the source recorded them as zeros when the pass began
            // (`ChunkDigester.mark`), and the destination, which zeroes them, hashes them
            // behind the fence.
            let zeroTouched = digester.touchedBitmap(pages: work.zeroRuns)
            try onChannel { () throws(ChannelError) in
                try pages.writeKnownZero(work.zeroRuns.lazy.map { PageRun(firstPage: UInt64($0.lowerBound), count: UInt64($0.count)) }, of: region)
                try pages.fence()
            }
            try sendTouched(zeroTouched, chunks: 0..<digester.chunkCount, isLast: false, iteration: iteration, chunkSize: digester.chunkSize)
        }
        let touched = digester.touchedBitmap(pages: work.runs)
        var segment: Range<Int>?
        var fencedBytes: UInt64 = 0
        for run in work.runs {
            try onChannel { () throws(ChannelError) in
                try pages.write(CollectionOfOne(PageRun(firstPage: UInt64(run.lowerBound), count: UInt64(run.count))), of: region)
            }
            segment = (segment?.lowerBound ?? run.lowerBound)..<run.upperBound
            guard pages.bytesWrittenThisIteration - fencedBytes >= UInt64(SourceMigrationRun.fenceBytes), let pageRange = segment else { continue }
            // Behind the fence every page of the segment has landed on the destination.
            try onChannel { () throws(ChannelError) in try pages.fence() }
            try sendTouched(touched, chunks: chunks(of: pageRange), isLast: false, iteration: iteration, chunkSize: digester.chunkSize)
            fencedBytes = pages.bytesWrittenThisIteration
            segment = nil
        }
        try onChannel { () throws(ChannelError) in try pages.fence() }
        try sendTouched(touched, chunks: segment.map(chunks(of:)) ?? 0..<0, isLast: true, iteration: iteration, chunkSize: digester.chunkSize)
        let statistics = try onChannel { () throws(ChannelError) in try pages.endIteration(timeout: limit.timeout) }
        if let through = awaitApplied { try self.awaitApplied(through: through, limit: limit, other: other) }
        return statistics
    }

    /// Waits until the destination applied and hashed `iteration` on this channel.
    func awaitApplied(through iteration: UInt32, limit: WaitLimit, other: ((MigrationMessage) throws(MigrationError) -> Void)?) throws(MigrationError) {
        while appliedThrough.map({ $0 < iteration }) ?? true {
            try receive(during: "waiting for the destination to apply iteration \(iteration) on page channel \(index)", limit: limit, other: other)
        }
    }

    /// TOUCHED_CHUNKS for `chunks` of `touched`, in bitmaps of at most a control frame; only
    /// non-empty ones travel, except the iteration's last, which always does.
    private func sendTouched(_ touched: [UInt8], chunks: Range<Int>, isLast: Bool, iteration: UInt32, chunkSize: Int) throws(MigrationError) {
        let firstByte = chunks.lowerBound / 8
        let endByte = max(firstByte, (chunks.upperBound + 7) / 8)
        let step = MigrationMessage.TouchedChunks.maximumBitmapBytes
        var start = firstByte
        repeat {
            let end = min(start + step, endByte)
            let bytes = touched[start..<end]
            let last = isLast && end == endByte
            if last || bytes.contains(where: { $0 != 0 }) {
                try session.send(.touchedChunks(.init(iteration: iteration, regionID: pageRegion.id, chunkSize: UInt32(chunkSize),
                                                      firstChunk: UInt32(start * 8), isLast: last, bitmap: Array(bytes))), .precopy)
            }
            start = end
        } while start < endByte
    }
}

/// One channel's share of a pass.
struct LaneWork: Sendable {
    var iteration: UInt32
    /// Page runs to write, each within one stripe and at most a fence segment long.
    var runs: [Range<Int>] = []
    /// Page runs known to hold zeros (never populated), sent as markers unread.
    var zeroRuns: [Range<Int>] = []

    var pageCount: Int { runs.reduce(0) { $0 + $1.count } + zeroRuns.reduce(0) { $0 + $1.count } }
}

/// How long a wait for the peer may take: the peer timeout, and inside the switchover no
/// longer than the budget has left.
struct WaitLimit: Sendable {
    var peerTimeout: Duration
    var deadline: ContinuousClock.Instant?

    var timeout: Duration {
        guard let deadline else { return peerTimeout }
        return max(.milliseconds(1), min(peerTimeout, deadline - .now))
    }
}

/// Which channel owns which pages: guest memory in stripes of `stripePages`, stripe s on
/// channel s mod N, so each channel owns disjoint pages for the whole migration (its zero
/// markers and its fences then order only its own writes) and a scattered dirty set still
/// spreads over all of them.
struct PageStripes: Sendable {
    /// 2 MiB of 4 KiB pages: as large as one coalesced WRITE, small enough to spread a
    /// working set of a few MiB.
    static let stripeBytes = 2 << 20

    let channels: Int
    let stripePages: Int

    init(channels: Int, pageSize: Int) {
        self.channels = max(1, channels)
        stripePages = max(1, Self.stripeBytes / pageSize)
    }

    func channel(ofPage page: Int) -> Int { (page / stripePages) % channels }

    /// `runs` cut at stripe boundaries and dealt to their channels, in order.
    func split(_ runs: [Range<Int>]) -> [[Range<Int>]] {
        var lanes = [[Range<Int>]](repeating: [], count: channels)
        guard channels > 1 else {
            lanes[0] = runs
            return lanes
        }
        for run in runs {
            var start = run.lowerBound
            while start < run.upperBound {
                let stripeEnd = (start / stripePages + 1) * stripePages
                let end = min(stripeEnd, run.upperBound)
                lanes[channel(ofPage: start)].append(start..<end)
                start = end
            }
        }
        return lanes
    }
}
