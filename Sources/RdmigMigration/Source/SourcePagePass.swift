import RdmigChannels
import RdmigDeviceState
import RdmigSystem
import RdmigTransport

/// One pass of pages and the VF state beside them: what the pre-copy passes and the
/// stop-and-copy pass send.
extension SourceMigrationRun {
    /// Page bytes written between two TOUCHED_CHUNKS fences: small enough that the
    /// destination's hashing of the last segment inside the downtime is short (and runs on
    /// pages still in its caches), large enough that fences stay a few per cent of the control
    /// traffic (a 1 GiB pass: 256 fences of ~128 bytes of bitmap).
    static let fenceBytes = 4 << 20

    /// One iteration of pages over every page channel: each channel sends its stripes' dirty
    /// pages (`SourcePageLane.send`) on a thread of its own, channel 0 on this thread, which
    /// also takes the destination's SWITCHOVER_ACKs meanwhile. With `awaitApplied`, a channel's
    /// share ends once the destination applied and hashed that iteration on it.
    func sendPages(_ dirty: DirtyBitmap, knownZero: DirtyBitmap? = nil, iteration: UInt32, awaitApplied: UInt32?,
                   path: SourceDataPath) throws(MigrationError) -> PageIterationStatistics {
        let region = path.region, digester = path.digester
        let zeroRuns = knownZero.map { dirty.intersection($0).runs() } ?? []
        // Runs no longer than a fence segment, so a long run (a first pass) is fenced too.
        let fencePages = max(1, Self.fenceBytes / region.pageSize)
        let runs = (knownZero.map { dirty.subtracting($0) } ?? dirty).runs(maximumLength: fencePages)
        // Hash this side's copy while the pages travel: inside the downtime the guest is
        // paused, so the hashes are final, and the digest lap shrinks to what the wire hides.
        // Known-zero pages are recorded as zeros, never read (`ChunkDigester.mark`).
        digester.mark(digester.touchedBitmap(pages: runs)[...], knownZero: zeroRuns)
        let stripes = PageStripes(channels: path.lanes.count, pageSize: region.pageSize)
        let laneRuns = stripes.split(runs), laneZeroRuns = stripes.split(zeroRuns)
        let work = path.lanes.indices.map { LaneWork(iteration: iteration, runs: laneRuns[$0], zeroRuns: laneZeroRuns[$0]) }
        let limit = waitLimit
        let results = try onEveryLane(path.lanes, phase: .precopy, threadName: "rdmig-pages") { () throws(MigrationError) in
            try path.lanes[0].send(work[0], digester: digester, limit: limit, awaitApplied: awaitApplied) { (message) throws(MigrationError) in
                try self.handleAsynchronous(message, path: path)
            }
        } others: { (lane) throws(MigrationError) in
            try lane.send(work[lane.index], digester: digester, limit: limit, awaitApplied: awaitApplied, other: nil)
        }
        var total = try results[0].get()
        for result in results.dropFirst() { total.add(parallel: try result.get()) }
        return total
    }

    /// Runs `first` for channel 0 on this thread and `others` for every other channel on a
    /// thread of its own (pinned to the hot path's CPUs in turn), and returns the results in
    /// channel order once every thread has ended: they use the guest's memory and the data
    /// path, so none may outlive the call. When channel 0 fails, the others' sessions are told
    /// why first: the destination then gives up on every channel, and their waits fail with it.
    func onEveryLane<T: Sendable>(_ lanes: [SourcePageLane], phase: MigrationError.Phase, threadName: String,
                                  first: () throws(MigrationError) -> T,
                                  others: @escaping @Sendable (SourcePageLane) throws(MigrationError) -> T)
        throws(MigrationError) -> [Result<T, MigrationError>] {
        var workers: [(thread: SystemThread, outcome: LaneOutcome<T>)] = []
        for lane in lanes.dropFirst() {
            let outcome = LaneOutcome<T>()
            do {
                workers.append((try SystemThread(name: "\(threadName)-\(lane.index)", cpus: laneCPUs(lane.index)) {
                    outcome.result = Result { () throws(MigrationError) in try others(lane) }
                }, outcome))
            } catch {
                for worker in workers { worker.thread.join() }
                throw MigrationError(phase, "starting page channel \(lane.index)'s thread: \(error)")
            }
        }
        let firstResult = Result { () throws(MigrationError) in try first() }
        if case .failure(let error) = firstResult {
            for lane in lanes.dropFirst() { lane.session.abort(error.description) }
        }
        var results = [firstResult]
        for worker in workers {
            worker.thread.join()
            results.append(worker.outcome.result ?? .failure(MigrationError(phase, "page channel thread \(threadName) ended without a result")))
        }
        return results
    }

    /// The CPU a page channel's thread runs on: the hot path's CPUs in turn.
    private func laneCPUs(_ index: Int) -> [Int32] {
        let cpus = options.pollerCPUs
        return cpus.isEmpty ? [] : [cpus[index % cpus.count]]
    }
}

/// What a page channel's thread hands back: read after the thread is joined.
final class LaneOutcome<T: Sendable>: @unchecked Sendable {
    var result: Result<T, MigrationError>?
}
