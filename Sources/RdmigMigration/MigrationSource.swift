#if canImport(Glibc)
import Glibc
#endif
import RdmigChannels
import RdmigDeviceState
import RdmigSystem
import RdmigTransport

/// The source service's migration: connect, authenticate, pre-copy the guest's memory and VF
/// state while it runs, switch over when the policy says so, commit or give the guest back.
///
/// Exactly one running copy: until COMMIT has been delivered to the destination (its send
/// completed, which on RC means the peer acknowledged it), every failure resumes the guest
/// here; after that the guest belongs to the destination.
public final class MigrationSource {
    public struct Options {
        public var endpoint: TransportEndpoint
        public var backend: any TransportBackend
        public var transportOptions: TransportOptions
        public var migration: MigrationConfiguration
        public var deviceSpecs: [String]
        public var key: PreSharedKey
        /// How long any single wait for the peer may take.
        public var peerTimeout: Duration = .seconds(60)
        /// ib-sw object changes per second while the guest runs (pre-copy dirties VF state).
        public var deviceChangesPerSecond: Int = 20_000
        /// CPUs for the completion poller (the transport's own threads take
        /// `transportOptions.threadCPUs`).
        public var pollerCPUs: [Int32] = []
        public var log: @Sendable (String) -> Void = { _ in }
        public var progress: (MigrationProgress) -> Void = { _ in }
        /// Why the migration must stop (a signal), nil while it may go on. Before COMMIT a stop
        /// gives the guest back to the source; after it, the hand-over is finished first.
        public var stopRequested: (@Sendable () -> String?)?
        /// How long, after losing the destination between COMMIT and RESUMED, this side keeps
        /// reconnecting to ask where the guest runs ([service] resolve-timeout). The guest
        /// stays paused here meanwhile: it is resumed only if the destination says it does not
        /// run it.
        public var resolveTimeout: Duration = .seconds(120)
        /// Whether to ask for an encrypted transport (`--encrypt`).
        public var encryption: EncryptionPolicy = .auto

        public init(endpoint: TransportEndpoint, backend: any TransportBackend, transportOptions: TransportOptions,
                    migration: MigrationConfiguration, deviceSpecs: [String], key: PreSharedKey) {
            self.endpoint = endpoint
            self.backend = backend
            self.transportOptions = transportOptions
            self.migration = migration
            self.deviceSpecs = deviceSpecs
            self.key = key
        }
    }

    typealias Device = SourceDevice

    let options: Options
    let clock = ContinuousClock()
    private(set) public var guest: SyntheticGuest?
    /// The newest iteration the destination has applied and hashed (ZERO_PAGES_APPLIED).
    private var appliedThrough: UInt32?
    /// Set when the guest is paused: every wait before COMMIT ends by then, and the guest is
    /// given back to the source (the switchover budget).
    private var switchoverDeadline: ContinuousClock.Instant?
    /// When the guest was paused for the switchover.
    private var pausedAt: ContinuousClock.Instant?
    /// COMMIT was sent, and neither RESUMED nor the destination's RESOLUTION came back.
    private var handOverUnresolved = false
    /// How long RESUMED may take after COMMIT before the destination is asked anew.
    static let resumedWait: Duration = .seconds(10)

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

    /// How long the next wait for the peer may take: the peer timeout, and inside the
    /// switchover no longer than the budget has left.
    private var waitTimeout: Duration {
        guard let switchoverDeadline else { return options.peerTimeout }
        return max(.milliseconds(1), min(options.peerTimeout, switchoverDeadline - clock.now))
    }

    public init(options: Options) {
        self.options = options
    }

    /// Runs the migration to its end. The report's status is `completed` only when the
    /// destination verified and resumed the guest.
    public func run() -> MigrationReport {
        let start = clock.now
        var report = MigrationReport(status: .setup)
        var devices: [Device] = []
        var session: MigrationSession?
        var paused = false
        var committed = false
        do {
            let guest = try makeGuest()
            self.guest = guest
            try guest.start()
            devices = try SourceDevice.make(specs: options.deviceSpecs, changesPerSecond: options.deviceChangesPerSecond)
            let connection = try connectRetryingRefusal(options.backend, to: options.endpoint, options: options.transportOptions)
            var routerConfiguration = CompletionRouter.Configuration()
            routerConfiguration.pollerCPUs = options.pollerCPUs
            let opened = try MigrationSession(connection: connection, role: .source, key: options.key,
                                              handshakeTimeout: options.transportOptions.handshakeTimeout,
                                              routerConfiguration: routerConfiguration, encryption: options.encryption)
            report.encrypted = opened.encrypted
            session = opened
            FaultInjection.reached("handshake")
            opened.stopReason = options.stopRequested
            options.log("authenticated \(options.endpoint) (\(opened.peerHello?.software ?? "?")) over \(connection.backend)")
            try migrate(guest: guest, devices: &devices, session: opened, report: &report, start: start,
                        paused: &paused, committed: &committed)
        } catch {
            var reason = (error as? MigrationError)?.description ?? "\(error)"
            if (error as? MigrationError)?.peerGaveUp != true, let cause = session?.unreadPeerAbort() {
                reason = "\((error as? MigrationError)?.phase.rawValue ?? "migration"): \(cause)"
            }
            if !committed, let switchoverDeadline, clock.now >= switchoverDeadline, !reason.contains("budget") {
                reason = "switchover budget of \(DurationText.milliseconds(options.migration.effectiveSwitchoverBudget)) exhausted "
                    + "([migration] switchover-budget), the guest resumed here: \(reason)"
            }
            report.status = .failed
            if !committed, let stop = options.stopRequested?() {
                report.status = .cancelled
                if !reason.contains(stop) { reason = "\(stop): \(reason)" }
            }
            report.errorDescription = reason
            options.log("migration \(report.status == .cancelled ? "cancelled" : "failed"): \(reason)")
            if !committed {
                // The guest first (every millisecond here is downtime), then the destination,
                // which runs nothing without COMMIT and discards its copy on ABORT or silence.
                for device in devices { try? device.provider.abortToRunning() }
                if let guest, paused {
                    guest.resume()
                    report.downtime = (clock.now - (pausedAt ?? clock.now)).milliseconds
                }
                session?.abort(reason)
                if let guest {
                    report.guestLocation = guestKeepsRunning(guest) ? "source (resumed)" : "source (paused: check the guest)"
                }
            } else if handOverUnresolved {
                report.guestLocation = "unknown (paused on the source; the destination may run it: COMMIT was sent and never answered)"
            } else {
                report.guestLocation = "destination (committed; the destination's report has the rest)"
            }
        }
        for device in devices { device.mutator?.stop() }
        session?.close()
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

    private func makeGuest() throws(MigrationError) -> SyntheticGuest {
        do {
            return try SyntheticGuest(configuration: options.migration.guest)
        } catch {
            throw MigrationError(.setup, "creating the guest: \(error)")
        }
    }

    // MARK: - The protocol

    private func migrate(guest: SyntheticGuest, devices: inout [Device], session: MigrationSession, report: inout MigrationReport,
                         start: ContinuousClock.Instant, paused: inout Bool, committed: inout Bool) throws(MigrationError) {
        let region = guest.region
        let connection = session.connection

        // LAYOUT → WINDOWS (and the VF state ring when there are devices).
        let layout = MigrationMessage.Layout(
            regions: [.init(id: region.id, guestPhysicalBase: region.guestPhysicalBase, length: UInt64(region.length), pageSize: UInt32(region.pageSize))],
            devices: devices.map { .init(id: $0.id, kind: $0.provider.name, stateVersion: $0.provider.streamVersion, needsSwitchoverAck: $0.provider.requiresSwitchoverAck) })
        try session.send(.layout(layout), .layout)
        guard case .windows(let windows) = try session.receive(.layout, during: "waiting for WINDOWS", timeout: options.peerTimeout),
              let window = windows.regions.first(where: { $0.regionID == region.id })?.window else {
            throw MigrationError(.layout, "the destination's answer to LAYOUT has no window for region \(region.id)")
        }
        var stream: ByteStreamSender?
        if !devices.isEmpty {
            guard case .streamRing(let ring) = try session.receive(.layout, during: "waiting for the VF state ring", timeout: options.peerTimeout) else {
                throw MigrationError(.layout, "the destination did not announce its VF state ring")
            }
            do {
                stream = try ByteStreamSender(router: session.router, ring: ring)
            } catch {
                throw MigrationError(.layout, "opening the VF state stream: \(error)")
            }
        }

        let memory = region.bytes(of: 0..<region.pageCount)
        let registration: MemoryRegistration
        let pages: PageChannel
        let pageRegion: PageChannel.Region
        do {
            registration = try connection.register(memory, access: [.localWrite])
            pageRegion = try PageChannel.Region(id: region.id, memory: UnsafeRawBufferPointer(memory), registration: registration, peerWindow: window, pageSize: region.pageSize)
            var pageConfiguration = PageChannel.Configuration()
            // "No write completed for this long" is the progress timeout.
            pageConfiguration.completionTimeout = options.migration.progressTimeout
            pages = try PageChannel(router: session.router, control: session.control, configuration: pageConfiguration)
        } catch {
            throw MigrationError(.layout, "preparing the page channel: \(error)")
        }
        let chunkSize = ChunkDigester.chunkSize(pageSize: region.pageSize)
        let digester: ChunkDigester
        do {
            digester = try ChunkDigester(region: region, chunkSize: chunkSize, seed: session.keys.digestSeed)
        } catch {
            throw MigrationError(.setup, "starting the digest thread: \(error)")
        }

        let dirtyLog: any DirtyLog
        do {
            switch options.migration.dirtyLog {
            case .synthetic: dirtyLog = guest.dirtyLog
            case .userfaultfd: dirtyLog = try UserfaultfdDirtyLog(region: region)
            }
            try dirtyLog.start()
        } catch {
            throw MigrationError(.setup, "starting the \(options.migration.dirtyLog.rawValue) dirty log: \(error)")
        }
        defer { if options.migration.dirtyLog != .synthetic { dirtyLog.stop() } }

        for device in devices {
            do {
                if device.provider.supportsPreCopy { try device.provider.enterPreCopy() }
            } catch {
                throw MigrationError(.setup, "VF \(device.provider.name): \(error)")
            }
        }

        var policy = ConvergencePolicy(configuration: options.migration.convergence)
        var encoder = ChunkRecordEncoder()
        let recordBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ChunkRecordHeader.size + ChunkRecordHeader.defaultMaxPayload, alignment: 64)
        defer { recordBuffer.deallocate() }

        // Iteration 0 sends everything written so far; what the guest writes from here on is
        // in the dirty log, collected before each later iteration.
        var discard = DirtyBitmap(pageCount: region.pageCount)
        _ = try collect(dirtyLog, into: &discard)
        var dirty = DirtyBitmap.full(pageCount: region.pageCount)
        var iteration: UInt32 = 0
        var lastDecision: ConvergenceDecision?
        report.setupTime = (clock.now - start).milliseconds
        report.status = .active
        var pagesDirtiedAtStart = guest.pagesWritten

        let completionLimit = options.migration.completionLimit(guestBytes: UInt64(region.length))
        while true {
            FaultInjection.reached(iteration == 0 ? "early-precopy" : iteration == 2 ? "late-precopy" : "precopy-\(iteration)")
            try session.checkInterrupted(.precopy)
            if clock.now - start > completionLimit {
                throw MigrationError(.precopy, "not switched over after \(formatFixed((clock.now - start).seconds, decimals: 0)) s, the limit for "
                    + "\(ByteCount(UInt64(region.length)).humanReadable) at \(DurationText.milliseconds(options.migration.completionTimeoutPerGiB)) per GiB "
                    + "([migration] completion-timeout-per-gib); the guest keeps running here")
            }
            let passStart = clock.now
            // The first pass sends never-populated memory as zero markers unread.
            let knownZero = iteration == 0 ? region.unpopulatedPages() : nil
            let statistics = try sendPages(dirty, knownZero: knownZero, iteration: iteration, pages: pages, region: pageRegion,
                                           session: session, digester: digester, devices: &devices)
            var deviceBytes: UInt64 = 0
            for index in devices.indices where devices[index].provider.supportsPreCopy {
                deviceBytes += try sendPrecopy(&devices[index], stream: stream!, encoder: &encoder, buffer: recordBuffer)
            }
            report.vfStateBytes.preCopy += deviceBytes
            report.transferred += statistics.bytesWritten + deviceBytes
            report.normalPages += statistics.pagesWritten
            report.normalBytes += statistics.bytesWritten
            report.zeroPages += statistics.zeroPages
            report.iterations = Int(iteration) + 1

            // Let the digest thread catch up while the guest still runs: a backlog left for
            // the switchover would be hashed inside the downtime (seen: a 1 GiB first pass
            // still hashing after 40 short passes made the policy throttle the guest to 99%).
            _ = digester.drain()
            try waitForIterationApplied(iteration, session: session, pages: pages, devices: &devices)
            dirty = DirtyBitmap(pageCount: region.pageCount)
            _ = try collect(dirtyLog, into: &dirty)
            let pagesNow = guest.pagesWritten
            var stopCopyBytes: UInt64 = 0
            for device in devices { stopCopyBytes += (try? device.provider.stopCopySize()) ?? 0 }
            // Bandwidth is what the wire carried over the time it took, without the time spent
            // scanning zero pages (they travel as markers): counting them at a page each made a
            // first pass over a mostly empty guest look several times faster than the link
            // (measured: 3 GiB/s "handled" against ~0.8 GB/s of pages), and that estimate
            // lingered into the switchover prediction.
            let measurement = IterationMeasurement(
                iteration: Int(iteration), bytesSent: statistics.bytesWritten + deviceBytes, elapsed: clock.now - passStart,
                zeroScanTime: statistics.zeroScanTime,
                remainingDirtyBytes: UInt64(dirty.count) * UInt64(region.pageSize), deviceStopCopyBytes: stopCopyBytes,
                bytesDirtied: (pagesNow - pagesDirtiedAtStart) * UInt64(region.pageSize),
                fixedSwitchoverCost: fixedSwitchoverCost(digester: digester, remainingDirtyBytes: UInt64(dirty.count) * UInt64(region.pageSize),
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
            iteration += 1
            if iteration == 1 { FaultInjection.stall(at: "source-stall-in-precopy") }
            switch decision.action {
            case .continue: continue
            case .throttle(let percent):
                guest.setThrottle(percent: percent)
                report.throttlePercent = percent
                continue
            case .fail(let reason):
                throw MigrationError(.precopy, "did not converge: \(reason)")
            case .switchover, .forceSwitchover:
                break
            }
            // Switchover-ack: the destination must have loaded each device's initial state.
            if devices.contains(where: { $0.provider.requiresSwitchoverAck && !$0.acknowledged }) {
                try waitForSwitchoverAcks(&devices, session: session, pages: pages)
            }
            break
        }

        // Stop and copy.
        report.status = .device
        let pauseStart = clock.now
        var steps = StepTimer()
        guest.pause()
        paused = true
        pausedAt = pauseStart
        let budget = options.migration.effectiveSwitchoverBudget
        switchoverDeadline = pauseStart + budget
        pages.completionDeadline = switchoverDeadline
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
        _ = try collect(dirtyLog, into: &final)
        final.formUnion(dirty)
        var deviceStopBytes: UInt64 = 0
        for device in devices { deviceStopBytes += (try? device.provider.stopCopySize()) ?? 0 }
        let reason: MigrationMessage.SwitchoverReason
        if case .forceSwitchover = lastDecision?.action { reason = .forced } else { reason = .converged }
        steps.lap("collect")
        try session.send(.switchover(.init(iteration: iteration, reason: reason, remainingDirtyBytes: UInt64(final.count) * UInt64(region.pageSize),
                                           deviceStopCopyBytes: deviceStopBytes)), .switchover, timeout: waitTimeout)
        let finalStatistics = try sendPages(final, iteration: iteration, pages: pages, region: pageRegion, session: session, digester: digester, devices: &devices)
        steps.lap("last pages")
        var stopCopySent: UInt64 = 0
        for index in devices.indices {
            stopCopySent += try sendStopCopy(&devices[index], stream: stream!, encoder: &encoder, buffer: recordBuffer, session: session)
        }
        if let stream {
            do {
                try stream.flush(timeout: waitTimeout)
            } catch {
                throw MigrationError.channel(error, .switchover, during: "sending VF stop-copy state")
            }
        }
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

        steps.lap("VF stop-copy")
        var entries = [MigrationMessage.Digest(subject: .region, id: region.id, algorithm: .xxh3ChunkTable, value: littleEndianBytes(digester.drain()))]
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
        try session.send(.digests(.init(entries: entries)), .switchover, timeout: waitTimeout)
        try expect(session, .switchover, during: "waiting for READY (the destination verifies memory and VF state)", pages: pages, devices: &devices) {
            if case .ready = $0 { return true } else { return false }
        }
        report.verified = true
        steps.lap("verify+READY")

        // COMMIT: from the moment its send completes, the guest belongs to the destination.
        // The budget's last check: past it the guest resumes here, whatever the destination
        // verified (it discards its copy when it sees the ABORT or loses this side).
        FaultInjection.reached("after-ready")
        FaultInjection.stall(at: "source-stall-before-commit")
        try session.checkInterrupted(.switchover)
        if clock.now > switchoverDeadline! {
            throw MigrationError(.switchover, "the switchover took longer than its budget of \(DurationText.milliseconds(budget))")
        }
        try session.send(.commit, .commit, timeout: waitTimeout)
        committed = true
        session.interruptible.store(false, ordering: .releasing)
        switchoverDeadline = nil
        FaultInjection.reached("after-commit")
        for device in devices { try? device.provider.transition(to: .stop) }
        var confirmedOnResolve: String?
        do {
            try expect(session, .commit, during: "waiting for RESUMED", pages: pages, devices: &devices,
                       timeout: min(options.peerTimeout, Self.resumedWait)) {
                if case .resumed = $0 { return true } else { return false }
            }
        } catch {
            // COMMIT went out and RESUMED did not come back: the destination may run the guest
            // or may never have seen COMMIT. Only it can tell; until it does, the guest stays
            // paused here.
            // An ABORT or ERROR instead of RESUMED is the destination saying it gave up before it
            // acted on COMMIT (after COMMIT it never aborts): the guest is ours again.
            if error.peerGaveUp {
                committed = false
                throw MigrationError(.commit, "\(error.description) (before it acted on COMMIT: it does not run the guest)", peerGaveUp: true)
            }
            options.log("lost the destination after COMMIT (\(error.description)): asking it where the guest runs")
            session.close()
            guard let resolution = resolveLostHandOver(migrationID: session.keys.migrationID) else {
                handOverUnresolved = true
                throw MigrationError(.commit, "\(error.description); the destination could not be asked where the guest runs "
                    + "within [service] resolve-timeout (\(formatFixed(options.resolveTimeout.seconds, decimals: 0)) s)")
            }
            guard resolution.outcome == .runsOnDestination else {
                // The destination does not run it, and will not: the guest is ours again.
                committed = false
                throw MigrationError(.commit, "\(error.description); the destination confirmed it does not run the guest (\(resolution.detail))")
            }
            options.log("the destination confirmed it runs the guest (\(resolution.detail))")
            confirmedOnResolve = resolution.detail
        }
        report.downtime = (clock.now - pauseStart).milliseconds
        FaultInjection.reached("after-resumed")
        steps.lap("COMMIT+RESUMED")
        options.log("switchover: \(steps.description)")
        report.downtimeLowerBound = MigrationReport.lowerBound(finalBytes: report.finalBytes,
                                                               bandwidth: max(report.bandwidth, report.switchoverBandwidth))
        report.status = .completed
        report.guestLocation = confirmedOnResolve.map { "destination (confirmed after the connection was lost: \($0))" } ?? "destination"
        guest.stop()
        _ = try? connection.deregister(registration)
        options.progress(MigrationProgress(
            phase: .completed, iteration: Int(iteration) + 1, elapsed: clock.now - start, transferred: report.transferred,
            guestBytes: UInt64(region.length), bandwidth: report.bandwidth, dirtyRate: report.dirtyRate,
            throttlePercent: report.throttlePercent))
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

    private func collect(_ log: any DirtyLog, into bitmap: inout DirtyBitmap) throws(MigrationError) -> Int {
        do {
            return try log.collectAndClear(into: &bitmap)
        } catch {
            throw MigrationError(.precopy, "collecting the dirty log: \(error)")
        }
    }

    /// Page bytes written between two TOUCHED_CHUNKS fences: small enough that the
    /// destination's hashing of the last segment inside the downtime is short (and runs on
    /// pages still in its caches), large enough that fences stay a few per cent of the control
    /// traffic (a 1 GiB pass: 256 fences of ~128 bytes of bitmap).
    static let fenceBytes = 4 << 20

    /// One iteration of pages: the zero-page gate, the pages of `knownZero` as zero markers
    /// without reading or hashing them (`ChunkDigester.mark`), the writes with a TOUCHED_CHUNKS fence
    /// every `fenceBytes`, the last TOUCHED_CHUNKS (which asks the destination to hash and
    /// acknowledge the iteration), ITERATION_DONE.
    private func sendPages(_ dirty: DirtyBitmap, knownZero: DirtyBitmap? = nil, iteration: UInt32, pages: PageChannel,
                           region: PageChannel.Region, session: MigrationSession, digester: ChunkDigester,
                           devices: inout [Device]) throws(MigrationError) -> PageIterationStatistics {
        while pages.awaitsZeroPagesApplied {
            try handleAsynchronous(try session.receive(.precopy, during: "waiting for ZERO_PAGES_APPLIED", timeout: waitTimeout),
                                   pages: pages, devices: &devices)
        }
        let zeroRuns = knownZero.map { dirty.intersection($0).runs() } ?? []
        // Runs no longer than a fence segment, so a long run (a first pass) is fenced too.
        let fencePages = max(1, Self.fenceBytes / region.pageSize)
        let runs = (knownZero.map { dirty.subtracting($0) } ?? dirty).runs(maximumLength: fencePages)
        // Hash this side's copy while the pages travel: inside the downtime the guest is
        // paused, so the hashes are final, and the digest lap shrinks to what the wire hides.
        let touched = digester.touchedBitmap(pages: runs)
        digester.mark(touched[...], knownZero: zeroRuns)
        let pagesPerChunk = digester.chunkSize / region.pageSize
        func chunks(of pages: Range<Int>) -> Range<Int> {
            (pages.lowerBound / pagesPerChunk)..<((pages.upperBound - 1) / pagesPerChunk + 1)
        }
        let during = "writing iteration \(iteration)'s \(dirty.count) pages"
        func onChannel<T>(_ body: () throws(ChannelError) -> T) throws(MigrationError) -> T {
            do { return try body() } catch { throw MigrationError.channel(error, .precopy, during: during) }
        }
        try onChannel { () throws(ChannelError) in try pages.beginIteration(iteration) }
        if !zeroRuns.isEmpty {
            // Unread on both counts: this side records their hash as a zero page's, and the
            // destination, which zeroes them, hashes them behind the fence.
            let zeroTouched = digester.touchedBitmap(pages: zeroRuns)
            try onChannel { () throws(ChannelError) in
                try pages.writeKnownZero(zeroRuns.lazy.map { PageRun(firstPage: UInt64($0.lowerBound), count: UInt64($0.count)) }, of: region)
                try pages.fence()
            }
            try sendTouched(zeroTouched, chunks: 0..<digester.chunkCount, isLast: false, iteration: iteration, region: region,
                            chunkSize: digester.chunkSize, session: session)
        }
        var segment: Range<Int>?
        var fencedBytes: UInt64 = 0
        for run in runs {
            try onChannel { () throws(ChannelError) in
                try pages.write(CollectionOfOne(PageRun(firstPage: UInt64(run.lowerBound), count: UInt64(run.count))), of: region)
            }
            segment = (segment?.lowerBound ?? run.lowerBound)..<run.upperBound
            guard pages.bytesWrittenThisIteration - fencedBytes >= UInt64(Self.fenceBytes), let pageRange = segment else { continue }
            // Behind the fence every page of the segment has landed on the destination.
            try onChannel { () throws(ChannelError) in try pages.fence() }
            try sendTouched(touched, chunks: chunks(of: pageRange), isLast: false, iteration: iteration, region: region, chunkSize: digester.chunkSize, session: session)
            fencedBytes = pages.bytesWrittenThisIteration
            segment = nil
        }
        try onChannel { () throws(ChannelError) in try pages.fence() }
        try sendTouched(touched, chunks: segment.map(chunks(of:)) ?? 0..<0, isLast: true, iteration: iteration, region: region,
                        chunkSize: digester.chunkSize, session: session)
        let statistics = try onChannel { () throws(ChannelError) in try pages.endIteration(timeout: waitTimeout) }
        return statistics
    }

    /// TOUCHED_CHUNKS for `chunks` of `touched`, in bitmaps of at most a control frame; only
    /// non-empty ones travel, except the iteration's last, which always does.
    private func sendTouched(_ touched: [UInt8], chunks: Range<Int>, isLast: Bool, iteration: UInt32, region: PageChannel.Region,
                             chunkSize: Int, session: MigrationSession) throws(MigrationError) {
        let firstByte = chunks.lowerBound / 8
        let endByte = max(firstByte, (chunks.upperBound + 7) / 8)
        let step = MigrationMessage.TouchedChunks.maximumBitmapBytes
        var start = firstByte
        repeat {
            let end = min(start + step, endByte)
            let bytes = touched[start..<end]
            let last = isLast && end == endByte
            if last || bytes.contains(where: { $0 != 0 }) {
                try session.send(.touchedChunks(.init(iteration: iteration, regionID: region.id, chunkSize: UInt32(chunkSize),
                                                      firstChunk: UInt32(start * 8), isLast: last, bitmap: Array(bytes))), .precopy)
            }
            start = end
        } while start < endByte
    }

    /// Pre-copy VF state: what the device has pending now, bounded so a busy device cannot
    /// keep one iteration going forever.
    private func sendPrecopy(_ device: inout Device, stream: ByteStreamSender, encoder: inout ChunkRecordEncoder,
                             buffer: UnsafeMutableRawBufferPointer) throws(MigrationError) -> UInt64 {
        let budget: UInt64
        do {
            let info = try device.provider.precopyInfo()
            budget = info.initialBytes + info.dirtyBytes + 1
        } catch {
            throw MigrationError(.precopy, "VF \(device.provider.name): \(error)")
        }
        let before = device.sender.precopyBytes
        var wrote = false
        while device.sender.precopyBytes - before < budget {
            let length: Int?
            do {
                length = try device.sender.nextPrecopyRecord(encoder: &encoder, into: buffer)
            } catch {
                throw MigrationError(.precopy, "VF \(device.provider.name) pre-copy: \(error)")
            }
            guard let length else { break }
            do {
                try stream.write(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), timeout: waitTimeout)
            } catch {
                throw MigrationError.channel(error, .precopy, during: "streaming VF \(device.provider.name) state")
            }
            wrote = true
        }
        // A partly filled slot would otherwise wait for more state: the destination needs the
        // initial bytes now, to acknowledge them before switchover.
        if wrote {
            do {
                try stream.flush(timeout: waitTimeout)
            } catch {
                throw MigrationError.channel(error, .precopy, during: "streaming VF \(device.provider.name) state")
            }
        }
        return device.sender.precopyBytes - before
    }

    private func sendStopCopy(_ device: inout Device, stream: ByteStreamSender, encoder: inout ChunkRecordEncoder,
                              buffer: UnsafeMutableRawBufferPointer, session: MigrationSession) throws(MigrationError) -> UInt64 {
        var records: UInt64 = 0
        while true {
            let length: Int?
            do {
                length = try device.sender.nextStopCopyRecord(encoder: &encoder, into: buffer)
            } catch {
                throw MigrationError(.switchover, "VF \(device.provider.name) stop-copy: \(error)")
            }
            guard let length else { break }
            records += 1
            do {
                try stream.write(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), timeout: waitTimeout)
            } catch {
                throw MigrationError.channel(error, .switchover, during: "streaming VF \(device.provider.name) stop-copy state")
            }
        }
        try session.send(.vfStateDone(.init(deviceID: device.id, phase: .stopCopy, bytes: device.sender.stopCopyBytes, records: records, checksum: 0)), .switchover)
        return device.sender.stopCopyBytes
    }

    /// The destination applied the iteration's zero pages and hashed its chunks.
    private func waitForIterationApplied(_ iteration: UInt32, session: MigrationSession, pages: PageChannel, devices: inout [Device]) throws(MigrationError) {
        while appliedThrough.map({ $0 < iteration }) ?? true {
            try handleAsynchronous(try session.receive(.precopy, during: "waiting for the destination to apply iteration \(iteration)", timeout: waitTimeout),
                                   pages: pages, devices: &devices)
        }
    }

    private func waitForSwitchoverAcks(_ devices: inout [Device], session: MigrationSession, pages: PageChannel) throws(MigrationError) {
        while devices.contains(where: { $0.provider.requiresSwitchoverAck && !$0.acknowledged }) {
            try handleAsynchronous(try session.receive(.precopy, during: "waiting for SWITCHOVER_ACK", timeout: waitTimeout),
                                   pages: pages, devices: &devices)
        }
    }

    /// Messages the destination sends on its own: ZERO_PAGES_APPLIED and SWITCHOVER_ACK.
    private func handleAsynchronous(_ message: MigrationMessage, pages: PageChannel, devices: inout [Device]) throws(MigrationError) {
        switch message {
        case .zeroPagesApplied(let applied):
            pages.zeroPagesApplied(through: applied.iteration)
            appliedThrough = max(appliedThrough ?? 0, applied.iteration)
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
    private func expect(_ session: MigrationSession, _ phase: MigrationError.Phase, during: String, pages: PageChannel,
                        devices: inout [Device], timeout: Duration? = nil, _ matches: (MigrationMessage) -> Bool) throws(MigrationError) {
        while true {
            let message = try session.receive(phase, during: during, timeout: timeout ?? waitTimeout)
            if matches(message) { return }
            try handleAsynchronous(message, pages: pages, devices: &devices)
        }
    }
}

func littleEndianBytes(_ value: UInt64) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}
