#if canImport(Glibc)
import Glibc
#endif
import RdmigChannels
import RdmigDeviceState
import RdmigSystem
import RdmigTransport

/// One source migration, as the protocol's phases (README, "Exactly one running copy"):
///
///     setUpGuest → connect (HELLO/AUTH) → exchangeLayout (LAYOUT/WINDOWS)
///       → precopy (passes until the policy switches over)
///       → stopAndCopy (pause, SWITCHOVER, the last pages and VF state)
///       → verify (DIGESTS → READY) → commit (COMMIT → RESUMED) → complete
///
/// Each phase is one method; what they share is stored here, and where the guest runs is one
/// value, `ownership`, which decides what a failure does (`giveUp`).
final class SourceMigrationRun {
    typealias Device = SourceDevice

    let options: MigrationSource.Options
    let clock = ContinuousClock()
    let start: ContinuousClock.Instant
    var report = MigrationReport(status: .setup)
    private(set) var ownership = GuestOwnership.runningOnSource

    private var guest: SyntheticGuest?
    var devices: [Device] = []
    private var session: MigrationSession?
    /// Kept to the end of the run: the joined page channels close after the migration's
    /// session told the destination the outcome (closed first, they would hide its reason).
    private var dataPath: SourceDataPath?

    /// Set when the guest is paused: every wait before COMMIT ends by then, and the guest is
    /// given back to the source (the switchover budget).
    private(set) var switchoverDeadline: ContinuousClock.Instant?
    /// When the guest was paused for the switchover.
    private var pausedAt: ContinuousClock.Instant?
    /// Where the downtime went, lap by lap, from the pause to RESUMED.
    private var steps = StepTimer()

    // Pre-copy's state, which the switchover continues from.
    private var policy: ConvergencePolicy
    private var iteration: UInt32 = 0
    /// Pages dirtied since the last pass was collected: the next pass's (or the final) pages.
    private var dirty: DirtyBitmap
    private var lastDecision: ConvergenceDecision?
    /// When the first pass began (`precopy-bandwidth` counts from here to the pause).
    private var precopyStart: ContinuousClock.Instant?

    /// How long RESUMED may take after COMMIT before the destination is asked anew.
    static let resumedWait: Duration = .seconds(10)

    init(options: MigrationSource.Options) {
        self.options = options
        start = clock.now
        policy = ConvergencePolicy(configuration: options.migration.convergence)
        dirty = DirtyBitmap(pageCount: 0)
    }

    /// How long a wait for the peer may take: the peer timeout, and inside the switchover no
    /// longer than the budget has left (also for the page channels' and VF state's threads).
    var waitLimit: WaitLimit { WaitLimit(peerTimeout: options.peerTimeout, deadline: switchoverDeadline) }

    /// How long the next wait for the peer may take (`waitLimit`, now).
    var waitTimeout: Duration { waitLimit.timeout }

    /// The phases in order; any failure ends the run and `giveUp` acts on `ownership`.
    func migrate() throws {
        let guest = try setUpGuest()
        let session = try connect()
        let path = try exchangeLayout(guest: guest, session: session)
        dataPath = path
        // Stopped on every outcome before the guest is resumed or the run reported.
        defer { path.stopDirtyLog() }
        try precopy(path)
        try stopAndCopy(path)
        try verify(path)
        try commit(path)
        complete(path)
    }

    // MARK: - Setup and handshake

    /// The (synthetic) guest starts running, with its devices.
    private func setUpGuest() throws -> SyntheticGuest {
        let guest: SyntheticGuest
        do {
            guest = try SyntheticGuest(configuration: options.migration.guest)
        } catch {
            throw MigrationError(.setup, "creating the guest: \(error)")
        }
        self.guest = guest
        try guest.start()
        devices = try SourceDevice.make(specs: options.deviceSpecs, changesPerSecond: options.deviceChangesPerSecond)
        return guest
    }

    /// Connects and authenticates (HELLO/AUTH); the channels open only after that.
    private func connect() throws -> MigrationSession {
        let connection = try connectRetryingRefusal(options.backend, to: options.endpoint, options: options.transportOptions)
        var routerConfiguration = CompletionRouter.Configuration()
        routerConfiguration.pollerCPUs = options.pollerCPUs
        let session = try MigrationSession(connection: connection, role: .source, key: options.key,
                                           handshakeTimeout: options.transportOptions.handshakeTimeout,
                                           routerConfiguration: routerConfiguration, encryption: options.encryption)
        report.encrypted = session.encrypted
        self.session = session
        FaultInjection.reached("handshake")
        session.stopReason = options.stopRequested
        options.log("authenticated \(options.endpoint) (\(session.peerHello?.software ?? "?")) over \(connection.backend)")
        return session
    }

    // MARK: - Layout

    /// LAYOUT → WINDOWS (and the VF state ring when there are devices); then everything the
    /// passes need: the page channel over the exported window, the digest thread, the dirty log.
    private func exchangeLayout(guest: SyntheticGuest, session: MigrationSession) throws(MigrationError) -> SourceDataPath {
        let region = guest.region
        let layout = MigrationMessage.Layout(
            regions: [.init(id: region.id, guestPhysicalBase: region.guestPhysicalBase, length: UInt64(region.length), pageSize: UInt32(region.pageSize))],
            devices: devices.map { .init(id: $0.id, kind: $0.provider.name, stateVersion: $0.provider.streamVersion, needsSwitchoverAck: $0.provider.requiresSwitchoverAck) },
            channels: UInt16(options.channels))
        try session.send(.layout(layout), .layout)
        guard case .windows(let windows) = try session.receive(.layout, during: "waiting for WINDOWS", timeout: options.peerTimeout),
              let window = windows.regions.first(where: { $0.regionID == region.id })?.window else {
            throw MigrationError(.layout, "the destination's answer to LAYOUT has no window for region \(region.id)")
        }
        guard windows.channels <= layout.channels else {
            throw MigrationError(.layout, "the destination accepted \(windows.channels) page channels, more than the \(layout.channels) asked for")
        }
        var ring: StreamRing?
        if !devices.isEmpty {
            guard case .streamRing(let announced) = try session.receive(.layout, during: "waiting for the VF state ring", timeout: options.peerTimeout) else {
                throw MigrationError(.layout, "the destination did not announce its VF state ring")
            }
            ring = announced
        }
        let path = try SourceDataPath(guest: guest, session: session, window: window, deviceRing: ring, migration: options.migration)
        for channel in 1..<Int(windows.channels) {
            try joinPageChannel(channel, of: session, to: path)
        }
        report.channels = path.lanes.count
        if path.lanes.count != options.channels {
            options.log("the destination accepted \(path.lanes.count) of the \(options.channels) page channels asked for")
        }
        try measureLink(path)
        for device in devices {
            do {
                if device.provider.supportsPreCopy { try device.provider.enterPreCopy() }
            } catch {
                throw MigrationError(.setup, "VF \(device.provider.name): \(error)")
            }
        }
        // Iteration 0 sends everything written so far; what the guest writes from here on is
        // in the dirty log, collected before each later iteration.
        var discard = DirtyBitmap(pageCount: region.pageCount)
        _ = try path.collect(into: &discard)
        dirty = DirtyBitmap.full(pageCount: region.pageCount)
        report.setupTime = (clock.now - start).milliseconds
        report.status = .active
        return path
    }

    /// Page channel `channel`: a connection of its own, authenticated like the first, that
    /// JOINs the migration and gets the destination's windows registered on it.
    private func joinPageChannel(_ channel: Int, of session: MigrationSession, to path: SourceDataPath) throws(MigrationError) {
        let connection = try connectRetryingRefusal(options.backend, to: options.endpoint, options: options.transportOptions)
        var routerConfiguration = CompletionRouter.Configuration()
        routerConfiguration.pollerCPUs = options.pollerCPUs
        let joined = try MigrationSession(connection: connection, role: .source, key: options.key,
                                          handshakeTimeout: options.transportOptions.handshakeTimeout,
                                          routerConfiguration: routerConfiguration, encryption: options.encryption)
        do throws(MigrationError) {
            joined.stopReason = options.stopRequested
            try joined.send(.join(.init(migrationID: session.keys.migrationID, channel: UInt16(channel))), .layout)
            guard case .windows(let windows) = try joined.receive(.layout, during: "waiting for WINDOWS on page channel \(channel)",
                                                                  timeout: options.peerTimeout),
                  let window = windows.regions.first(where: { $0.regionID == path.region.id })?.window else {
                throw MigrationError(.layout, "the destination's answer to JOIN on page channel \(channel) has no window for region \(path.region.id)")
            }
            try path.addLane(session: joined, window: window, migration: options.migration)
        } catch {
            joined.abort(error.description)
            joined.close()
            throw error
        }
    }

    /// What the link moves, measured before the first pass: a burst of 1 MiB WRITEs over every
    /// page channel at once (`link-bandwidth`). The downtime's lower bound is counted at this
    /// rate, never at a rate measured on the passes themselves, which anything slowing the
    /// passes would lower along with the bound it is meant to check.
    private func measureLink(_ path: SourceDataPath) throws(MigrationError) {
        let lanes = path.lanes
        let pageSize = path.region.pageSize
        let total = min(LinkBurst.bytes, path.region.length) / pageSize * pageSize
        let share = (total / lanes.count) / pageSize * pageSize
        guard share > 0 else { return }
        // No write completing for the progress timeout fails the burst, as it fails a pass
        // (the page channel's completionTimeout); the peer timeout bounds the whole burst.
        let limit = options.peerTimeout
        @Sendable func burst(_ lane: SourcePageLane) throws(MigrationError) -> Duration {
            do throws(ChannelError) {
                let start = lane.index * share
                return try lane.pages.measureLink(lane.pageRegion, bytes: start..<(start + share), writeBytes: 1 << 20, timeout: limit)
            } catch {
                throw MigrationError.channel(error, .layout, during: "measuring the link on page channel \(lane.index)")
            }
        }
        let begin = clock.now
        let results = try onEveryLane(lanes, phase: .layout, threadName: "rdmig-burst") { () throws(MigrationError) in
            try burst(lanes[0])
        } others: { (lane) throws(MigrationError) in
            try burst(lane)
        }
        for result in results { _ = try result.get() }
        let elapsed = clock.now - begin
        let bytes = share * lanes.count
        report.linkBandwidth = Double(bytes) / max(elapsed.seconds, 1e-9)
        options.log("link: \(ByteCount(UInt64(bytes)).humanReadable) over \(lanes.count) page channel\(lanes.count == 1 ? "" : "s") in "
            + "\(formatFixed(elapsed.milliseconds, decimals: 1)) ms: \(DurationText.rate(report.linkBandwidth))")
    }

    // MARK: - Pre-copy

    /// Passes over the dirty pages while the guest runs, until the policy switches over (or
    /// gives up, or a limit is hit); then the devices' switchover acknowledgements.
    private func precopy(_ path: SourceDataPath) throws(MigrationError) {
        let completionLimit = options.migration.completionLimit(guestBytes: UInt64(path.region.length))
        var pagesDirtiedAtStart = path.guest.pagesWritten
        precopyStart = clock.now
        while true {
            FaultInjection.reached(iteration == 0 ? "early-precopy" : iteration == 2 ? "late-precopy" : "precopy-\(iteration)")
            try path.session.checkInterrupted(.precopy)
            if clock.now - start > completionLimit {
                throw MigrationError(.precopy, "not switched over after \(formatFixed((clock.now - start).seconds, decimals: 0)) s, the limit for "
                    + "\(ByteCount(UInt64(path.region.length)).humanReadable) at \(DurationText.milliseconds(options.migration.completionTimeoutPerGiB)) per GiB "
                    + "([migration] completion-timeout-per-gib); the guest keeps running here")
            }
            let decision = try precopyPass(path, pagesDirtiedAtStart: &pagesDirtiedAtStart)
            iteration += 1
            if iteration == 1 { FaultInjection.stall(at: "source-stall-in-precopy") }
            switch decision.action {
            case .continue: continue
            case .throttle(let percent):
                path.guest.setThrottle(percent: percent)
                report.throttlePercent = percent
                continue
            case .fail(let reason):
                throw MigrationError(.precopy, "did not converge: \(reason)")
            case .switchover, .forceSwitchover:
                break
            }
            // Before the pause: the destination has hashed every pre-copy pass, so only the
            // last pass's pages are hashed inside the downtime.
            let limit = waitLimit
            for lane in path.lanes {
                try lane.awaitApplied(through: iteration - 1, limit: limit, other: lane.index == 0 ? { (message) throws(MigrationError) in
                    try self.handleAsynchronous(message, path: path)
                } : nil)
            }
            // Switchover-ack: the destination must have loaded each device's initial state.
            while devices.contains(where: { $0.provider.requiresSwitchoverAck && !$0.acknowledged }) {
                try handleAsynchronous(try path.session.receive(.precopy, during: "waiting for SWITCHOVER_ACK", timeout: waitTimeout), path: path)
            }
            return
        }
    }

    /// One pass: the dirty pages and pending VF state, the destination's acknowledgement, the
    /// next dirty set, and the policy's decision on it.
    private func precopyPass(_ path: SourceDataPath, pagesDirtiedAtStart: inout UInt64) throws(MigrationError) -> ConvergenceDecision {
        let region = path.region
        let passStart = clock.now
        // The first pass sends never-populated memory as zero markers unread.
        let knownZero = iteration == 0 ? region.unpopulatedPages() : nil
        // No stop-and-wait: pass i ends once the destination acknowledged pass i - 1, so its
        // hashing of the last pages of a pass overlaps this side's next harvest and writes,
        // and its backlog stays within one pass. What makes that safe: a page zeroed by a
        // ZERO_PAGES marker of pass i is not written again before the destination applied
        // pass i (`PageChannel.beginIteration` waits for it), and RC orders each channel's
        // fences behind its own writes, whichever pass they belong to.
        // The VF state pre-copies on its own thread while the pages go.
        let limit = waitLimit
        let deviceJob = try path.deviceStream?.inBackground(devices, name: "rdmig-vf-send") { (stream, devices) throws(MigrationError) in
            var bytes: UInt64 = 0
            for index in devices.indices where devices[index].provider.supportsPreCopy {
                bytes += try stream.sendPrecopy(&devices[index], limit: limit)
            }
            return bytes
        }
        let pages = Result { () throws(MigrationError) in
            try sendPages(dirty, knownZero: knownZero, iteration: iteration, awaitApplied: iteration > 0 ? iteration - 1 : nil, path: path)
        }
        if deviceJob != nil, case .failure(let error) = pages {
            // The VF thread may be waiting for the destination's credit: told why, the
            // destination gives up and its wait ends (the guest runs here all along).
            path.session.abort(error.description)
        }
        let deviceBytes = try finish(deviceJob)
        let statistics = try pages.get()
        report.vfStateBytes.preCopy += deviceBytes
        report.transferred += statistics.bytesWritten + deviceBytes
        report.normalPages += statistics.pagesWritten
        report.normalBytes += statistics.bytesWritten
        report.zeroPages += statistics.zeroPages
        report.iterations = Int(iteration) + 1

        // Let the digest thread catch up while the guest still runs: a backlog left for
        // the switchover would be hashed inside the downtime (seen: a 1 GiB first pass
        // still hashing after 40 short passes made the policy throttle the guest to 99%).
        _ = path.digester.drain()
        dirty = DirtyBitmap(pageCount: region.pageCount)
        _ = try path.collect(into: &dirty)
        let pagesNow = path.guest.pagesWritten
        var stopCopyBytes: UInt64 = 0
        for device in devices { stopCopyBytes += (try? device.provider.stopCopySize()) ?? 0 }
        let remainingDirtyBytes = UInt64(dirty.count) * UInt64(region.pageSize)
        // Bandwidth is what the wire carried over the time it took, without the time spent
        // scanning zero pages (they travel as markers): counting them at a page each made a
        // first pass over a mostly empty guest look several times faster than the link
        // (measured: 3 GiB/s "handled" against ~0.8 GB/s of pages), and that estimate
        // lingered into the switchover prediction.
        let measurement = IterationMeasurement(
            iteration: Int(iteration), bytesSent: statistics.bytesWritten + deviceBytes, elapsed: clock.now - passStart,
            zeroScanTime: statistics.zeroScanTime,
            remainingDirtyBytes: remainingDirtyBytes, deviceStopCopyBytes: stopCopyBytes,
            bytesDirtied: (pagesNow - pagesDirtiedAtStart) * UInt64(region.pageSize),
            fixedSwitchoverCost: fixedSwitchoverCost(digester: path.digester, remainingDirtyBytes: remainingDirtyBytes,
                                                     bandwidth: policy.currentBandwidth))
        pagesDirtiedAtStart = pagesNow
        let decision = policy.decide(after: measurement)
        lastDecision = decision
        options.log(decision.description)
        report.passes.append(.init(iteration: Int(iteration), bytes: measurement.bytesSent, time: measurement.elapsed.milliseconds,
                                   dirtyBytes: measurement.remainingDirtyBytes, throttle: decision.throttlePercent, decision: decision.description))
        report.bandwidth = policy.measuredBandwidth ?? report.bandwidth
        report.dirtyRate = decision.dirtyRate
        options.progress(MigrationProgress(
            phase: .precopy, iteration: Int(iteration) + 1, elapsed: clock.now - start, transferred: report.transferred,
            guestBytes: UInt64(region.length), remainingDirtyBytes: measurement.remainingDirtyBytes,
            bandwidth: report.bandwidth, dirtyRate: decision.dirtyRate, throttlePercent: decision.throttlePercent))
        return decision
    }

    /// What switchover costs besides moving the bytes, measured as it goes: the SWITCHOVER,
    /// DIGESTS/READY and COMMIT/RESUMED round trips (~2 ms seen here) and hashing. Both sides
    /// hash while the pages travel — this side from the moment they are marked, the
    /// destination behind each TOUCHED_CHUNKS fence — so what is left after the last byte is
    /// the destination's last segment (counted twice: it waits for this side's digest too)
    /// plus whatever part of this side's hashing the wire did not hide (nothing on loopback
    /// TCP, where hashing outruns the link; not so on a fast RDMA link).
    private func fixedSwitchoverCost(digester: ChunkDigester, remainingDirtyBytes: UInt64, bandwidth: Double?) -> Duration {
        let hashing = digester.predictedDrainTime(extraBytes: remainingDirtyBytes)
        let wire = Duration.seconds(Double(remainingDirtyBytes) / max(bandwidth ?? 0, 1))
        let unhidden = hashing > wire ? hashing - wire : .zero
        let lastSegment = digester.predictedDrainTime(extraBytes: min(remainingDirtyBytes, UInt64(Self.fenceBytes)))
        return unhidden + lastSegment * 2 + .milliseconds(2)
    }

    // MARK: - Stop and copy

    /// Pauses the guest (the downtime starts), stops the devices, and sends SWITCHOVER, the last
    /// dirty pages and the VF stop-copy state.
    private func stopAndCopy(_ path: SourceDataPath) throws(MigrationError) {
        let region = path.region
        report.status = .device
        let pauseStart = clock.now
        if let precopyStart, pauseStart > precopyStart {
            report.precopyBandwidth = Double(report.transferred) / (pauseStart - precopyStart).seconds
        }
        steps = StepTimer()
        path.guest.pause()
        ownership = .pausedOnSource
        pausedAt = pauseStart
        switchoverDeadline = pauseStart + options.migration.effectiveSwitchoverBudget
        path.setCompletionDeadline(switchoverDeadline)
        steps.lap("pause")
        FaultInjection.stall(at: "source-stall-after-pause")
        FaultInjection.reached("stop-and-copy")
        for device in devices {
            // The device stops changing with STOP_COPY (its steps are refused under the
            // provider's lock); its activity thread is joined after the downtime, since
            // joining waits out its sleep (up to a batch interval, ~3 ms, seen in the laps).
            do {
                try device.provider.enterStopCopy()
            } catch {
                throw MigrationError(.switchover, "VF \(device.provider.name): \(error)")
            }
        }
        var final = DirtyBitmap(pageCount: region.pageCount)
        _ = try path.collect(into: &final)
        final.formUnion(dirty)
        var deviceStopBytes: UInt64 = 0
        for device in devices { deviceStopBytes += (try? device.provider.stopCopySize()) ?? 0 }
        let reason: MigrationMessage.SwitchoverReason
        if case .forceSwitchover = lastDecision?.action { reason = .forced } else { reason = .converged }
        steps.lap("collect")
        try path.session.send(.switchover(.init(iteration: iteration, reason: reason, remainingDirtyBytes: UInt64(final.count) * UInt64(region.pageSize),
                                                deviceStopCopyBytes: deviceStopBytes)), .switchover, timeout: waitTimeout)
        // The last pages and the VF stop-copy state travel at the same time: the VF's on its
        // own thread and stream, the pages over every page channel.
        let limit = waitLimit
        let deviceJob = try path.deviceStream?.inBackground(devices, name: "rdmig-vf-send") { (stream, devices) throws(MigrationError) in
            var bytes: UInt64 = 0
            for index in devices.indices {
                bytes += try stream.sendStopCopy(&devices[index], limit: limit)
            }
            try stream.flush(limit: limit, .switchover, during: "sending VF stop-copy state")
            return bytes
        }
        let pagesStart = clock.now
        let pages = Result { () throws(MigrationError) in try sendPages(final, iteration: iteration, awaitApplied: nil, path: path) }
        let pagesTime = clock.now - pagesStart
        let stopCopySent = try finish(deviceJob)
        let finalStatistics = try pages.get()
        options.log("last pass: \(finalStatistics.pagesWritten) pages in \(finalStatistics.writesPosted) writes over \(path.lanes.count) "
            + "page channel\(path.lanes.count == 1 ? "" : "s"), \(formatFixed(finalStatistics.elapsed.milliseconds, decimals: 1)) ms from the "
            + "first write to the last completion of \(formatFixed(pagesTime.milliseconds, decimals: 1)) ms")
        steps.lap(deviceJob.map { "last pages \(formatFixed(pagesTime.milliseconds, decimals: 1)) ms ‖ VF stop-copy "
            + "\(formatFixed($0.elapsed.milliseconds, decimals: 1)) ms, in parallel:" } ?? "last pages")
        report.vfStateBytes.stopCopy = stopCopySent
        report.transferred += finalStatistics.bytesWritten + stopCopySent
        report.normalPages += finalStatistics.pagesWritten
        report.normalBytes += finalStatistics.bytesWritten
        report.zeroPages += finalStatistics.zeroPages
        report.finalBytes = finalStatistics.bytesWritten + stopCopySent
        if finalStatistics.bytesWritten > 0, finalStatistics.elapsed > .zero {
            report.switchoverBandwidth = Double(finalStatistics.bytesWritten) / finalStatistics.elapsed.seconds
        }
        report.iterations = Int(iteration) + 1
        report.expectedDowntime = lastDecision?.prediction.map { $0.totalSeconds * 1000 }
    }

    /// Waits for a VF state pass that ran beside the pages and takes back the devices it
    /// advanced (their senders' positions; `acknowledged` is this thread's to keep).
    private func finish(_ job: DeviceStreamJob?) throws(MigrationError) -> UInt64 {
        guard let job else { return 0 }
        let result = Result { () throws(MigrationError) in try job.finish() }
        for index in devices.indices { devices[index].sender = job.devices[index].sender }
        return try result.get()
    }

    // MARK: - Verify

    /// DIGESTS (memory and every device's state) → READY: the destination verified the guest.
    private func verify(_ path: SourceDataPath) throws(MigrationError) {
        var entries = [MigrationMessage.Digest(subject: .region, id: path.region.id, algorithm: .xxh3ChunkTable,
                                               value: littleEndianBytes(path.digester.drain()))]
        steps.lap("digest")
        for device in devices {
            do {
                if let digest = try device.provider.stateDigest() {
                    entries.append(.init(subject: .device, id: device.id, algorithm: .deviceState, value: digest.encoded))
                }
            } catch {
                throw MigrationError(.switchover, "VF \(device.provider.name) digest: \(error)")
            }
        }
        try path.session.send(.digests(.init(entries: entries)), .switchover, timeout: waitTimeout)
        try expect(path, .switchover, during: "waiting for READY (the destination verifies memory and VF state)") {
            if case .ready = $0 { return true } else { return false }
        }
        report.verified = true
        steps.lap("verify+READY")
    }

    // MARK: - Commit

    /// COMMIT: from the moment its send completes, the guest belongs to the destination; then
    /// RESUMED, or — the link lost — the destination's answer to RESOLVE.
    private func commit(_ path: SourceDataPath) throws(MigrationError) {
        let session = path.session
        // The budget's last check: past it the guest resumes here, whatever the destination
        // verified (it discards its copy when it sees the ABORT or loses this side).
        FaultInjection.reached("after-ready")
        FaultInjection.stall(at: "source-stall-before-commit")
        try session.checkInterrupted(.switchover)
        if let switchoverDeadline, clock.now > switchoverDeadline {
            throw MigrationError(.switchover, "the switchover took longer than its budget of "
                + DurationText.milliseconds(options.migration.effectiveSwitchoverBudget))
        }
        try session.send(.commit, .commit, timeout: waitTimeout)
        ownership = .committed
        session.interruptible.store(false, ordering: .releasing)
        switchoverDeadline = nil
        FaultInjection.reached("after-commit")
        for device in devices { try? device.provider.transition(to: .stop) }
        var confirmedOnResolve: String?
        do {
            try expect(path, .commit, during: "waiting for RESUMED", timeout: min(options.peerTimeout, Self.resumedWait)) {
                if case .resumed = $0 { return true } else { return false }
            }
        } catch {
            confirmedOnResolve = try resolveAfterCommit(session: session, lost: error)
        }
        ownership = .resumedOnDestination
        report.downtime = (clock.now - (pausedAt ?? clock.now)).milliseconds
        FaultInjection.reached("after-resumed")
        steps.lap("COMMIT+RESUMED")
        options.log("switchover: \(steps.description)")
        report.guestLocation = confirmedOnResolve.map { "destination (confirmed after the connection was lost: \($0))" } ?? "destination"
    }

    /// COMMIT went out and RESUMED did not come back: the destination may run the guest or may
    /// never have seen COMMIT. Only it can tell; until it does, the guest stays paused here.
    /// Returns the destination's word that it runs the guest; throws when it does not (the
    /// guest is this side's again) or cannot be asked (`ownership` stays `.committed`).
    private func resolveAfterCommit(session: MigrationSession, lost error: MigrationError) throws(MigrationError) -> String {
        // An ABORT or ERROR instead of RESUMED is the destination saying it gave up before it
        // acted on COMMIT (after COMMIT it never aborts): the guest is ours again.
        if error.peerGaveUp {
            ownership = .pausedOnSource
            throw MigrationError(.commit, "\(error.description) (before it acted on COMMIT: it does not run the guest)", peerGaveUp: true)
        }
        options.log("lost the destination after COMMIT (\(error.description)): asking it where the guest runs")
        session.close()
        guard let resolution = resolveLostHandOver(migrationID: session.keys.migrationID) else {
            throw MigrationError(.commit, "\(error.description); the destination could not be asked where the guest runs "
                + "within [service] resolve-timeout (\(formatFixed(options.resolveTimeout.seconds, decimals: 0)) s)")
        }
        guard resolution.outcome == .runsOnDestination else {
            // The destination does not run it, and will not: the guest is ours again.
            ownership = .pausedOnSource
            throw MigrationError(.commit, "\(error.description); the destination confirmed it does not run the guest (\(resolution.detail))")
        }
        options.log("the destination confirmed it runs the guest (\(resolution.detail))")
        return resolution.detail
    }

    /// Reconnects to the destination and asks where the guest of migration `migrationID` runs,
    /// for up to `resolveTimeout`; nil when no answer came.
    private func resolveLostHandOver(migrationID: [UInt8]) -> MigrationMessage.Resolution? {
        let deadline = clock.now + options.resolveTimeout
        var attempts = 0
        while clock.now < deadline {
            attempts += 1
            var transportOptions = options.transportOptions
            transportOptions.connectTimeout = max(.milliseconds(100), min(.seconds(5), deadline - clock.now))
            do {
                let connection = try options.backend.connect(to: options.endpoint, options: transportOptions)
                let session = try MigrationSession(connection: connection, role: .source, key: options.key,
                                                   handshakeTimeout: transportOptions.handshakeTimeout,
                                                   routerConfiguration: CompletionRouter.Configuration(), encryption: options.encryption)
                defer { session.close() }
                try session.send(.resolve(.init(migrationID: migrationID)), .commit, timeout: .seconds(5))
                let answer = try session.receive(.commit, during: "waiting for RESOLUTION", timeout: .seconds(10))
                guard case .resolution(let resolution) = answer else {
                    throw MigrationError(.commit, "the destination answered RESOLVE with \(answer.wireName)")
                }
                return resolution
            } catch {
                if attempts == 1 || attempts % 10 == 0 {
                    options.log("asking the destination where the guest runs (attempt \(attempts)): \(error)")
                }
                usleep(500_000)
            }
        }
        return nil
    }

    /// The guest runs on the destination: the report's last figures.
    private func complete(_ path: SourceDataPath) {
        // Counted at the link's measured rate; without a measurement (a guest too small for
        // a burst), at the best rate the passes saw.
        report.downtimeLowerBound = MigrationReport.lowerBound(
            finalBytes: report.finalBytes,
            bandwidth: report.linkBandwidth > 0 ? report.linkBandwidth : max(report.bandwidth, report.switchoverBandwidth))
        report.status = .completed
        path.guest.stop()
        path.deregisterGuestMemory()
        options.progress(MigrationProgress(
            phase: .completed, iteration: Int(iteration) + 1, elapsed: clock.now - start, transferred: report.transferred,
            guestBytes: UInt64(path.region.length), bandwidth: report.bandwidth, dirtyRate: report.dirtyRate,
            throttlePercent: report.throttlePercent))
    }

    // MARK: - Outcome

    /// The run failed: before COMMIT the guest resumes here (every millisecond is downtime)
    /// and the destination is told; after it, the report says where the guest is.
    func giveUp(_ error: any Error) {
        var reason = (error as? MigrationError)?.description ?? "\(error)"
        if (error as? MigrationError)?.peerGaveUp != true, let cause = session?.unreadPeerAbort() {
            reason = "\((error as? MigrationError)?.phase.rawValue ?? "migration"): \(cause)"
        }
        let ownsGuest = ownership == .runningOnSource || ownership == .pausedOnSource
        if ownsGuest, let switchoverDeadline, clock.now >= switchoverDeadline, !reason.contains("budget") {
            reason = "switchover budget of \(DurationText.milliseconds(options.migration.effectiveSwitchoverBudget)) exhausted "
                + "([migration] switchover-budget), the guest resumed here: \(reason)"
        }
        report.status = .failed
        if ownsGuest, let stop = options.stopRequested?() {
            report.status = .cancelled
            if !reason.contains(stop) { reason = "\(stop): \(reason)" }
        }
        report.errorDescription = reason
        options.log("migration \(report.status == .cancelled ? "cancelled" : "failed"): \(reason)")
        switch ownership {
        case .runningOnSource, .pausedOnSource:
            // The guest first, then the destination, which runs nothing without COMMIT and
            // discards its copy on ABORT or silence.
            for device in devices { try? device.provider.abortToRunning() }
            if let guest, ownership == .pausedOnSource {
                guest.resume()
                report.downtime = (clock.now - (pausedAt ?? clock.now)).milliseconds
            }
            session?.abort(reason)
            if let guest {
                report.guestLocation = guestKeepsRunning(guest) ? "source (resumed)" : "source (paused: check the guest)"
            }
        case .committed:
            report.guestLocation = "unknown (paused on the source; the destination may run it: COMMIT was sent and never answered)"
        case .resumedOnDestination:
            report.guestLocation = "destination (committed; the destination's report has the rest)"
        }
    }

    /// Releases what the run holds and returns its report.
    func finish() -> MigrationReport {
        for device in devices { device.mutator?.stop() }
        session?.close()
        dataPath?.closeJoinedSessions()
        dataPath = nil
        report.totalTime = (clock.now - start).milliseconds
        return report
    }

    /// A resumed synthetic guest with a dirty rate must visibly write again.
    private func guestKeepsRunning(_ guest: SyntheticGuest) -> Bool {
        guard !guest.isPaused, guest.isRunning else { return false }
        guard guest.dirtyRate.bytesPerSecond > 0 else { return true }
        let before = guest.pagesWritten
        let deadline = clock.now + .seconds(2)
        while clock.now < deadline {
            if guest.pagesWritten > before { return true }
            usleep(5_000)
        }
        return false
    }

    // MARK: - Messages the destination sends on its own

    /// ZERO_PAGES_APPLIED and SWITCHOVER_ACK.
    func handleAsynchronous(_ message: MigrationMessage, path: SourceDataPath) throws(MigrationError) {
        switch message {
        case .zeroPagesApplied:
            _ = path.lanes[0].accept(message)
        case .switchoverAck(let ack):
            guard let index = devices.firstIndex(where: { $0.id == ack.deviceID }) else {
                throw MigrationError(.precopy, "SWITCHOVER_ACK for unknown device \(ack.deviceID)")
            }
            devices[index].acknowledged = true
        default:
            throw MigrationError(.precopy, "unexpected \(message.wireName) from the destination")
        }
    }

    /// Waits for the message `matches` accepts, handling asynchronous ones on the way.
    private func expect(_ path: SourceDataPath, _ phase: MigrationError.Phase, during: String, timeout: Duration? = nil,
                        _ matches: (MigrationMessage) -> Bool) throws(MigrationError) {
        while true {
            let message = try path.session.receive(phase, during: during, timeout: timeout ?? waitTimeout)
            if matches(message) { return }
            try handleAsynchronous(message, path: path)
        }
    }
}

func littleEndianBytes(_ value: UInt64) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}
