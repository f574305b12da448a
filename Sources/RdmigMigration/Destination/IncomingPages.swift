import RdmigChannels
import RdmigSystem
import Synchronization

/// What each page channel's messages do on the destination — zero pages applied, chunks
/// hashed behind their fence, an iteration's totals — shared by the channels' threads. Every
/// page belongs to one channel, so the pages one channel's messages touch are disjoint from
/// another's; the digesters and the totals are the shared parts, and both lock.
final class IncomingPages: Sendable {
    let memory: GuestMemory
    let digesters: [UInt32: ChunkDigester]
    /// The guest's size from LAYOUT: no count the source sends may exceed it.
    let guestBytes: UInt64
    let guestPages: UInt64
    private let log: @Sendable (String) -> Void

    struct Totals {
        var zeroPages: UInt64 = 0
        var normalPages: UInt64 = 0
        var normalBytes: UInt64 = 0
        var iterations = 0
        /// Per channel: the newest iteration whose last TOUCHED_CHUNKS was hashed here.
        var hashedThrough: [Int: UInt32] = [:]
        /// The iteration the source sends with the guest paused (SWITCHOVER), once known.
        var finalIteration: UInt32?
    }
    private let totals = Mutex(Totals())

    init(memory: GuestMemory, digesters: [UInt32: ChunkDigester], guestBytes: UInt64, log: @escaping @Sendable (String) -> Void) {
        self.memory = memory
        self.digesters = digesters
        self.guestBytes = guestBytes
        guestPages = memory.regions.reduce(0) { $0 + UInt64($1.pageCount) }
        self.log = log
    }

    var snapshot: Totals { totals.withLock { $0 } }

    func switchingOver(at iteration: UInt32) {
        totals.withLock { $0.finalIteration = iteration }
    }

    /// Whether every one of `channels` channels has hashed `iteration`'s last pages.
    func hashed(_ iteration: UInt32, channels: Int) -> Bool {
        totals.withLock { totals in (0..<channels).allSatisfy { totals.hashedThrough[$0].map { $0 >= iteration } ?? false } }
    }

    /// Handles a message about pages arriving on channel `channel` (answering on `session`);
    /// false when it is not one.
    func receive(_ message: MigrationMessage, channel: Int, session: MigrationSession,
                 phase: MigrationError.Phase) throws(MigrationError) -> Bool {
        switch message {
        case .zeroPages(let zero):
            guard let region = try? memory.region(id: zero.regionID) else {
                throw MigrationError(phase, "ZERO_PAGES for unknown region \(zero.regionID)")
            }
            let applied: UInt64
            do {
                applied = try PageChannel.applyZeroPages(zero, to: region.bytes(of: 0..<region.pageCount), pageSize: region.pageSize)
            } catch {
                throw MigrationError(phase, "applying ZERO_PAGES: \(error)")
            }
            try totals.withLock { (totals) throws(MigrationError) in
                try Self.add(applied, to: &totals.zeroPages, "ZERO_PAGES", "runs.count", phase)
            }
        case .iterationDone(let done):
            // An iteration sends each page once at most: larger counts are not the source's.
            for (field, value, most) in [("pagesWritten", done.pagesWritten, guestPages), ("zeroPages", done.zeroPages, guestPages),
                                         ("bytesWritten", done.bytesWritten, guestBytes)] where value > most {
                throw MigrationError(phase, "ITERATION_DONE \(done.iteration) has \(field) \(value), more than the guest's \(most)")
            }
            try totals.withLock { (totals) throws(MigrationError) in
                totals.iterations = max(totals.iterations, Int(done.iteration) + 1)
                try Self.add(done.pagesWritten, to: &totals.normalPages, "ITERATION_DONE", "pagesWritten", phase)
                try Self.add(done.bytesWritten, to: &totals.normalBytes, "ITERATION_DONE", "bytesWritten", phase)
            }
            if done.iteration == 0 && channel == 0 { FaultInjection.stall(at: "dest-stall-in-precopy") }
        case .touchedChunks(let touched):
            try hash(touched, channel: channel, session: session, phase: phase)
        default:
            return false
        }
        return true
    }

    /// Queues the chunks behind a TOUCHED_CHUNKS fence for hashing; the iteration's last one on
    /// this channel is hashed now and acknowledged with ZERO_PAGES_APPLIED.
    private func hash(_ touched: MigrationMessage.TouchedChunks, channel: Int, session: MigrationSession,
                      phase: MigrationError.Phase) throws(MigrationError) {
        guard let digester = digesters[touched.regionID], Int(touched.chunkSize) == digester.chunkSize else {
            throw MigrationError(phase, "TOUCHED_CHUNKS for region \(touched.regionID) with chunks of \(touched.chunkSize) bytes does not match this side's digest layout")
        }
        let bitmapBytes = (digester.chunkCount + 7) / 8
        let firstByte = Int(touched.firstChunk) / 8
        guard firstByte <= bitmapBytes, touched.bitmap.count <= bitmapBytes - firstByte else {
            throw MigrationError(phase, "TOUCHED_CHUNKS for region \(touched.regionID): firstChunk \(touched.firstChunk) and a \(touched.bitmap.count)-byte bitmap run past the region's \(digester.chunkCount) chunks")
        }
        digester.mark(touched.bitmap[...], firstChunk: Int(touched.firstChunk))
        guard touched.isLast else { return }
        let drainStart = ContinuousClock.now
        // Hash now, while the guest still runs on the source (which waits for this answer
        // before deciding): a backlog would be hashed inside the downtime.
        _ = digester.drain()
        let final = totals.withLock { totals in
            totals.hashedThrough[channel] = max(totals.hashedThrough[channel] ?? 0, touched.iteration)
            return totals.finalIteration.map { touched.iteration >= $0 } ?? false
        }
        if final {
            log("page channel \(channel): hashed the last iteration's pages in \(formatFixed((ContinuousClock.now - drainStart).milliseconds, decimals: 1)) ms")
        }
        try session.send(.zeroPagesApplied(.init(iteration: touched.iteration)), phase)
    }

    /// Adds a count the source sent into a total; refuses a sum that does not fit.
    static func add(_ value: UInt64, to total: inout UInt64, _ message: String, _ field: String,
                    _ phase: MigrationError.Phase = .precopy) throws(MigrationError) {
        let (sum, overflow) = total.addingReportingOverflow(value)
        guard !overflow else {
            throw MigrationError(phase, "\(message) '\(field)' \(value) overflows the total of \(total) received so far")
        }
        total = sum
    }
}
