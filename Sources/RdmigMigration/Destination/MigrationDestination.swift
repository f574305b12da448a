#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigChannels
import RdmigDeviceState
import RdmigMemory
import RdmigSystem
import RdmigTransport

/// The destination service's side of one migration: authenticate the source before exposing
/// anything, map and pin the guest's memory, export it, load VF state, verify everything
/// against the source's digests, and resume only on COMMIT. Any failure before COMMIT
/// discards what arrived: nothing runs here.
public final class MigrationDestination {
    public struct Options {
        public var key: PreSharedKey
        public var peerTimeout: Duration = .seconds(60)
        /// How long the source may take to authenticate (see `TransportOptions.handshakeTimeout`).
        public var handshakeTimeout: Duration = .seconds(5)
        /// Backing for the incoming guest memory (anonymous, memfd, file).
        public var memoryBacking: GuestMemoryBacking = .anonymous
        /// Largest guest accepted, so a confused or hostile peer cannot make us pin all memory;
        /// nil: what this host can pin when LAYOUT arrives (`GuestSizeLimit.current()`).
        public var maximumGuestBytes: UInt64?
        /// CPUs for the completion poller.
        public var pollerCPUs: [Int32] = []
        /// The NUMA node the guest's memory is bound to (the NIC's, `[memory] node`); nil: the
        /// kernel's default policy.
        public var memoryNode: Int?
        /// How the guest's memory is pinned (`[memory] guest-pinning`).
        public var guestPinning: MemoryConfiguration.GuestPinning = .auto
        public var log: @Sendable (String) -> Void = { _ in }
        /// Why the migration must stop (a signal), nil while it may go on. Before COMMIT a stop
        /// discards the incoming guest and tells the source; after it, the hand-over finishes.
        public var stopRequested: (@Sendable () -> String?)?
        /// Recent outcomes, for a source that asks where the guest runs (RESOLVE).
        package var ledger: ResolutionLedger?
        /// Where later authenticated sessions come from while this migration is in doubt
        /// (READY sent, the source lost before COMMIT): the source's RESOLVE arrives on one.
        package var nextSession: (@Sendable (Duration) -> MigrationSession?)?
        /// How long a verified incoming guest is held paused for the source to come back, and
        /// how long the source tries to learn the outcome ([service] resolve-timeout).
        public var resolveTimeout: Duration = .seconds(120)
        /// Whether to ask for an encrypted transport (`--encrypt`).
        public var encryption: EncryptionPolicy = .auto

        public init(key: PreSharedKey) {
            self.key = key
        }
    }

    struct Device {
        let id: UInt32
        let provider: any DeviceStateProvider
        let needsAck: Bool
        var acknowledged = false
    }

    let options: Options
    let clock = ContinuousClock()
    private var report = MigrationReport(status: .setup)
    /// When the session was handed to this side (its report's times count from here).
    private var startedAt = ContinuousClock.now
    /// What this side holds of the incoming guest; it decides what a failure does.
    private var incoming = IncomingGuest.receiving
    /// When the last message came from the source (its silence is bounded by the peer timeout).
    private var lastMessageAt = ContinuousClock.now
    /// The page channels' shared state, once the regions are exported (for the report's totals).
    private var incomingPages: IncomingPages?
    /// When SWITCHOVER arrived: the downtime as this side sees it.
    private var switchoverAt: ContinuousClock.Instant?

    /// The verified, resumed guest memory after a completed migration (nil otherwise).
    public var memory: GuestMemory? {
        if case .running(let memory) = incoming { return memory } else { return nil }
    }
    /// Set when RESUMED may not have reached the source (the connection failed first): the
    /// service should stay to answer its RESOLVE.
    public private(set) var resumptionUnconfirmed = false

    public init(options: Options) {
        self.options = options
    }

    /// The router configuration the destination's sessions use.
    public static func routerConfiguration(pollerCPUs: [Int32]) -> CompletionRouter.Configuration {
        var configuration = CompletionRouter.Configuration()
        configuration.pollerCPUs = pollerCPUs
        return configuration
    }

    /// Serves an authenticated session: a migration (its report), or a source's RESOLVE for
    /// an earlier one, answered from the ledger (nil: no migration report).
    package func serve(session: MigrationSession) -> MigrationReport? {
        let start = clock.now
        session.stopReason = options.stopRequested
        let first: MigrationMessage
        do {
            first = try session.receive(.layout, during: "waiting for LAYOUT", timeout: options.peerTimeout)
        } catch {
            return run(session: session, start: start, opening: .failure(error))
        }
        if case .resolve(let resolve) = first {
            (options.ledger ?? ResolutionLedger()).answer(resolve, on: session, log: options.log)
            return nil
        }
        return run(session: session, start: start, opening: .success(first))
    }

    /// Serves an authenticated session whose first message (or the failure to read it) is
    /// `opening`, to its end.
    private func run(session: MigrationSession, start: ContinuousClock.Instant,
                     opening: Result<MigrationMessage, MigrationError>) -> MigrationReport {
        startedAt = start
        report.encrypted = session.encrypted
        let connection = session.connection
        options.log("authenticated the source \(connection.peerEndpoint) (\(session.peerHello?.software ?? "?")) over \(connection.backend)")
        var lost: MigrationError?
        do throws(MigrationError) {
            try receive(session: session, opening: try opening.get())
        } catch {
            let stopped = options.stopRequested?() != nil && session.interruptible.load(ordering: .acquiring)
            if case .verified = incoming, !error.peerGaveUp, !stopped, options.nextSession != nil {
                lost = error
            } else {
                discard(session: session, reason: error.description, status: stopped ? .cancelled : .failed)
            }
        }
        recordPageTotals(incomingPages)
        let delivered = session.close()
        if report.status == .completed {
            options.ledger?.record(session.keys.migrationID, .runsOnDestination, "it had COMMIT and resumed")
            if !delivered {
                resumptionUnconfirmed = true
                options.log("the source may not have heard RESUMED: it can ask where the guest runs (RESOLVE)")
            }
        } else if let lost {
            awaitResolution(session: session, lost: lost)
        } else {
            options.ledger?.record(session.keys.migrationID, .notOnDestination, "it discarded its copy: \(report.errorDescription ?? "failed")")
        }
        report.totalTime = (clock.now - start).milliseconds
        return report
    }

    /// Nothing runs here: the incoming guest is dropped and the source told why.
    private func discard(session: MigrationSession, reason: String, status: MigrationReport.Status) {
        report.status = status
        report.errorDescription = reason
        report.guestLocation = "not here (incoming guest discarded)"
        options.log("migration failed: \(reason); the incoming guest was discarded")
        session.abort(reason)
        incoming = .discarded
    }

    // MARK: - The protocol's phases

    /// LAYOUT → WINDOWS, then pre-copy, stop-and-copy, verify and commit. Whatever is exposed
    /// for the migration is withdrawn on the way out, after the source heard why this side
    /// gave up (otherwise its next write fails as a refused access and hides the reason).
    private func receive(session: MigrationSession, opening: MigrationMessage) throws(MigrationError) {
        guard case .layout(let layout) = opening else {
            throw MigrationError(.layout, "the source did not send LAYOUT after authenticating")
        }
        let path = try acceptLayout(layout, session: session)
        defer { path.close() }
        report.setupTime = (clock.now - startedAt).milliseconds
        do throws(MigrationError) {
            try precopy(path, session: session)
            let digests = try stopAndCopy(path, session: session)
            try verify(digests, path: path, session: session)
            try commit(path, session: session)
        } catch {
            session.abort(error.description)
            throw error
        }
    }

    /// Checks LAYOUT, maps and pins the guest's memory, exports it (WINDOWS) and opens the VF
    /// state stream (STREAM_RING).
    private func acceptLayout(_ layout: MigrationMessage.Layout, session: MigrationSession) throws(MigrationError) -> DestinationDataPath {
        let limit = options.maximumGuestBytes.map { GuestSizeLimit(bytes: $0, reason: "[service] max-guest-size") } ?? GuestSizeLimit.current()
        let (total, guestLayouts) = try Self.check(layout, limit: limit)
        let mapStart = clock.now
        // Faulting the guest's memory in is most of this side's setup; a thread per CPU the
        // hot path may use (or this process may) does it in parallel, and on the hot path's
        // CPUs the pages land on the NIC's node.
        let cpus = options.pollerCPUs.isEmpty ? ((try? SystemThread.currentAffinity()) ?? []) : options.pollerCPUs
        let pinThreads = min(max(cpus.count, 1), 8)
        // An RDMA registration pins every page itself; over tcp nothing needs a page before it
        // is written, so pages locked as they are first touched leave zero pages untouched and
        // setup free of the wait (a 4 GiB guest: ~1 s of faulting on two threads here).
        let onFault = options.guestPinning == .onFault || (options.guestPinning == .auto && session.connection.backend == .tcp)
        let guestMemory: GuestMemory
        do {
            guestMemory = try GuestMemory.map(layouts: guestLayouts, backing: options.memoryBacking, pin: true,
                                              pinThreads: pinThreads, pinCPUs: options.pollerCPUs, node: options.memoryNode,
                                              pinOnFault: onFault)
        } catch {
            throw MigrationError(.layout, "mapping the guest's memory: \(error)")
        }
        options.log("mapped and pinned \(ByteCount(total).humanReadable) of guest memory in \(formatFixed((clock.now - mapStart).milliseconds, decimals: 0)) ms ("
            + (onFault ? "locked as pages are first written" : "\(pinThreads) thread\(pinThreads == 1 ? "" : "s")")
            + (options.memoryNode.map { ", bound to NUMA node \($0)" } ?? "") + ")")
        if onFault, let first = guestMemory.regions.first {
            // The link burst at setup writes the first bytes of the first region: faulted in
            // now, the burst measures the link rather than this side's page faults.
            let bytes = min(LinkBurst.bytes, first.length)
            _ = try? PageFaulting.populate(first.pagePointer(0), length: bytes, threads: pinThreads, cpus: options.pollerCPUs)
        }
        let path = DestinationDataPath(memory: guestMemory, connection: session.connection)
        // Extra page channels come as sessions of their own: without a listener to take them
        // from, one channel.
        let channels = options.nextSession == nil ? 1 : Int(layout.channels)
        do throws(MigrationError) {
            try path.exportRegions(digestSeed: session.keys.digestSeed)
            incomingPages = path.receivePages(guestBytes: total, log: options.log)
            try path.addDevices(layout.devices)
            try session.send(.windows(.init(regions: path.windows, channels: UInt16(channels))), .layout)
            if let ring = try path.openDeviceStream(router: session.router) {
                try session.send(.streamRing(ring), .layout)
            }
            try acceptPageChannels(channels, session: session, path: path)
            report.channels = channels
        } catch {
            path.close()
            throw error
        }
        report.status = .active
        lastMessageAt = clock.now
        return path
    }

    /// Page channels 1 ..< `count`: sessions that authenticated on the listener and JOIN this
    /// migration (its id comes from this session's keys); each gets the guest's memory
    /// registered on its connection (WINDOWS) and a thread for its messages. Another source's
    /// session meanwhile is told to come back later; a RESOLVE is answered from the ledger.
    private func acceptPageChannels(_ count: Int, session: MigrationSession, path: DestinationDataPath) throws(MigrationError) {
        guard count > 1, let nextSession = options.nextSession, let pages = path.pages else { return }
        let deadline = clock.now + options.peerTimeout
        var joined = Set<Int>()
        while joined.count < count - 1 {
            guard clock.now < deadline else {
                throw MigrationError(.layout, "\(joined.count + 1) of \(count) page channels joined within \(formatFixed(options.peerTimeout.seconds, decimals: 0)) s")
            }
            // The source sends nothing on this session until its channels joined: anything
            // here is its ABORT (it gave up, e.g. stopped by a signal), an ERROR or the
            // connection ending, and waiting on for channels that will not come would hold
            // the destination for the whole peer timeout.
            if let message = try session.receiveIfAny(.layout, during: "waiting for the page channels to join", timeout: .zero) {
                throw MigrationError(.layout, "unexpected \(message.wireName) from the source while its page channels join")
            }
            guard let candidate = nextSession(min(.milliseconds(250), deadline - clock.now)) else { continue }
            let first: MigrationMessage
            do {
                first = try candidate.receive(.layout, during: "waiting for JOIN", timeout: options.handshakeTimeout)
            } catch {
                options.log("a session while page channels join: \(error.description)")
                candidate.close()
                continue
            }
            if case .resolve(let resolve) = first {
                (options.ledger ?? ResolutionLedger()).answer(resolve, on: candidate, log: options.log)
                continue
            }
            guard case .join(let join) = first, join.migrationID == session.keys.migrationID else {
                candidate.abort("this destination is busy with another migration; try again later")
                candidate.close()
                continue
            }
            let channel = Int(join.channel)
            guard channel < count, !joined.contains(channel) else {
                candidate.abort("page channel \(channel) is not one of this migration's \(count) or joined twice")
                candidate.close()
                throw MigrationError(.layout, "the source joined page channel \(channel) twice or beyond the \(count) accepted")
            }
            let cpus = options.pollerCPUs.isEmpty ? [] : [options.pollerCPUs[channel % options.pollerCPUs.count]]
            do throws(MigrationError) {
                candidate.stopReason = options.stopRequested
                let lane = try DestinationPageLane(channel: channel, session: candidate, memory: path.memory, pages: pages, cpus: cpus)
                path.addLane(lane)
                try candidate.send(.windows(.init(regions: lane.windows, channels: UInt16(count))), .layout)
            } catch {
                candidate.abort(error.description)
                candidate.close()
                throw error
            }
            joined.insert(channel)
        }
        options.log("\(count) page channels joined")
    }

    /// Pages (ZERO_PAGES, TOUCHED_CHUNKS, ITERATION_DONE; the WRITEs need nothing from this
    /// side) until SWITCHOVER: the source paused the guest.
    private func precopy(_ path: DestinationDataPath, session: MigrationSession) throws(MigrationError) {
        while true {
            let message = try nextMessage(path, session: session, phase: .precopy)
            if case .switchover(let switchover) = message {
                switchoverAt = clock.now
                path.pages?.switchingOver(at: switchover.iteration)
                report.status = .device
                FaultInjection.stall(at: "dest-stall-at-switchover")
                options.log("source paused the guest (\(switchover.reason)); \(ByteCount(switchover.remainingDirtyBytes).humanReadable) of pages and \(ByteCount(switchover.deviceStopCopyBytes).humanReadable) of VF state follow")
                return
            }
            try receivePages(message, path: path, session: session, phase: .precopy)
        }
    }

    /// The last pages and VF state, until DIGESTS.
    private func stopAndCopy(_ path: DestinationDataPath, session: MigrationSession) throws(MigrationError) -> MigrationMessage.Digests {
        while true {
            switch try nextMessage(path, session: session, phase: .switchover) {
            case .digests(let digests): return digests
            case .vfStateDone: continue
            case let message: try receivePages(message, path: path, session: session, phase: .switchover)
            }
        }
    }

    /// Compares memory and VF state with the source's digests; READY when they match. From
    /// here the guest is held paused until COMMIT.
    private func verify(_ digests: MigrationMessage.Digests, path: DestinationDataPath, session: MigrationSession) throws(MigrationError) {
        let verifyStart = clock.now
        try awaitLastPages(path, session: session)
        let problems = compare(digests, path: path)
        options.log("verified memory and VF state in \(formatFixed((clock.now - verifyStart).milliseconds, decimals: 1)) ms")
        if !problems.isEmpty {
            let reason = "verification failed: " + problems.joined(separator: "; ")
            try? session.control.send(MigrationMessage.error(.init(code: 1, message: reason)))
            throw MigrationError(.switchover, reason)
        }
        report.verified = true
        if let loader = path.loader {
            report.vfStateBytes = .init(preCopy: loader.precopyBytes, stopCopy: loader.stopCopyBytes)
        }
        incoming = .verified(path.memory, path.devices.map(\.provider))
        try session.send(.ready, .switchover)
        FaultInjection.stall(at: "dest-stall-after-ready")
    }

    /// Waits until every joined page channel hashed the last iteration's pages (channel 0's
    /// arrived before DIGESTS on the same connection; the others' travel on their own).
    private func awaitLastPages(_ path: DestinationDataPath, session: MigrationSession) throws(MigrationError) {
        guard !path.lanes.isEmpty, let pages = path.pages, let final = pages.snapshot.finalIteration else { return }
        let deadline = clock.now + options.peerTimeout
        while !pages.hashed(final, channels: path.lanes.count + 1) {
            if let (channel, failure) = path.laneFailure {
                throw MigrationError(.switchover, "page channel \(channel): \(failure.description)")
            }
            guard clock.now < deadline else {
                throw MigrationError(.switchover, "the last pages did not arrive on every page channel within \(formatFixed(options.peerTimeout.seconds, decimals: 0)) s")
            }
            usleep(100)
        }
    }

    /// COMMIT: the guest is this side's from here, whatever happens to the connection; it
    /// resumes and RESUMED tells the source.
    private func commit(_ path: DestinationDataPath, session: MigrationSession) throws(MigrationError) {
        let message = try nextMessage(path, session: session, phase: .commit)
        guard case .commit = message else {
            throw MigrationError(.commit, "unexpected \(message.wireName) from the source while waiting for COMMIT")
        }
        session.interruptible.store(false, ordering: .releasing)
        incoming = .running(path.memory)
        for device in path.devices {
            do {
                try device.provider.finishResuming(run: true)
            } catch {
                // The source has let go of the guest: say so loudly, do not pretend.
                options.log("VF \(device.provider.name) did not resume after COMMIT: \(error)")
            }
        }
        let resumedAt = clock.now
        do {
            try session.send(.resumed, .commit)
        } catch {
            // It runs here all the same; the source can ask (RESOLVE).
            resumptionUnconfirmed = true
            options.log("could not tell the source the guest runs here: \(error.description)")
        }
        if let switchoverAt { report.downtime = (resumedAt - switchoverAt).milliseconds }
        report.status = .completed
        report.guestLocation = "destination"
    }

    /// The next message from the source. Meanwhile SWITCHOVER_ACK goes out for each device whose
    /// initial state has loaded (from here: this is the one thread that sends on the control
    /// channel), and a failed VF state load ends the migration.
    private func nextMessage(_ path: DestinationDataPath, session: MigrationSession,
                             phase: MigrationError.Phase) throws(MigrationError) -> MigrationMessage {
        while true {
            if let (channel, failure) = path.laneFailure {
                // The source's ABORT on this session says why, when the channel only saw its effect.
                if let cause = session.unreadPeerAbort() { throw MigrationError(phase, cause, peerGaveUp: true) }
                throw MigrationError(phase, "page channel \(channel): \(failure.description)")
            }
            if let loader = path.loader {
                for (index, device) in path.devices.enumerated() where device.needsAck && !device.acknowledged && loader.initialDataLoaded(tag: device.id) {
                    try session.send(.switchoverAck(.init(deviceID: device.id)), phase)
                    path.acknowledge(deviceAt: index)
                }
                if let failure = loader.failure { throw MigrationError(phase, "loading VF state: \(failure)") }
            }
            // With a VF stream the wait is short, so SWITCHOVER_ACK goes out soon after the
            // loader has the initial state; silence is still bounded by the peer timeout.
            if let message = try session.receiveIfAny(phase, during: "receiving from the source",
                                                      timeout: path.loader == nil ? options.peerTimeout : .milliseconds(20)) {
                lastMessageAt = clock.now
                return message
            }
            if clock.now - lastMessageAt > options.peerTimeout {
                throw MigrationError(phase, "the source sent nothing for \(formatFixed(options.peerTimeout.seconds, decimals: 0)) s")
            }
        }
    }

    /// A message about pages on channel 0 (the others' arrive on their own threads).
    private func receivePages(_ message: MigrationMessage, path: DestinationDataPath, session: MigrationSession,
                              phase: MigrationError.Phase) throws(MigrationError) {
        guard let pages = path.pages, try pages.receive(message, channel: 0, session: session, phase: phase) else {
            throw MigrationError(phase, "unexpected \(message.wireName) from the source")
        }
    }

    /// The page figures every channel reported, into the report.
    private func recordPageTotals(_ pages: IncomingPages?) {
        guard let totals = pages?.snapshot else { return }
        report.zeroPages = totals.zeroPages
        report.normalPages = totals.normalPages
        report.normalBytes = totals.normalBytes
        report.transferred = totals.normalBytes
        report.iterations = totals.iterations
    }

    /// The source was lost after READY and before COMMIT: this side holds the verified guest
    /// paused and waits up to `resolveTimeout` for the source's RESOLVE on a new session. The
    /// source is paused too and asks only after it sent COMMIT, so on RESOLVE this side commits
    /// forward: resumes and answers that the guest runs here. Without RESOLVE the copy is
    /// dropped: a source that never sent COMMIT has resumed its own, one that did keeps its
    /// paused copy until it learns the outcome — never two running copies, never none known.
    private func awaitResolution(session lostSession: MigrationSession, lost: MigrationError) {
        let migrationID = lostSession.keys.migrationID
        let began = clock.now
        let deadline = began + options.resolveTimeout
        options.log("lost the source after READY (\(lost.description)): holding the verified guest paused for up to "
            + "\(formatFixed(options.resolveTimeout.seconds, decimals: 0)) s for it to ask where the guest runs")
        while clock.now < deadline, options.stopRequested?() == nil {
            guard let session = options.nextSession?(min(.milliseconds(250), deadline - clock.now)) else { continue }
            let first: MigrationMessage?
            do {
                first = try session.receive(.commit, during: "waiting for RESOLVE", timeout: .seconds(5))
            } catch {
                options.log("a session while in doubt: \(error.description)")
                session.close()
                continue
            }
            guard case .resolve(let resolve) = first else {
                session.abort("this destination is holding an earlier migration's guest until its source comes back; try again later")
                session.close()
                continue
            }
            guard resolve.migrationID == migrationID else {
                options.ledger?.answer(resolve, on: session, log: options.log)
                continue
            }
            let waited = clock.now - began
            guard case .verified(let memory, let providers) = incoming else { break }
            for provider in providers {
                do {
                    try provider.finishResuming(run: true)
                } catch {
                    options.log("VF \(provider.name) did not resume after RESOLVE: \(error)")
                }
            }
            incoming = .running(memory)
            let detail = "it held the verified guest paused \(formatFixed(waited.seconds, decimals: 1)) s and committed on RESOLVE"
            options.ledger?.record(migrationID, .runsOnDestination, detail)
            try? session.send(.resolution(.init(outcome: .runsOnDestination, detail: detail)), .commit, timeout: .seconds(5))
            if !session.close() { resumptionUnconfirmed = true }
            report.status = .completed
            report.guestLocation = "destination (committed on the source's RESOLVE after \(formatFixed(waited.seconds, decimals: 1)) s)"
            options.log("the source came back and asked: the guest runs here (\(detail))")
            return
        }
        incoming = .discarded
        let detail = "it held the verified guest paused \(formatFixed((clock.now - began).seconds, decimals: 0)) s in doubt, then discarded it"
        options.ledger?.record(migrationID, .notOnDestination, detail)
        report.status = .failed
        report.errorDescription = "\(lost.description); the source did not come back within [service] resolve-timeout"
        report.guestLocation = "unknown (not here: \(detail); the source holds its copy)"
        options.log("in doubt and not resolved: \(detail)")
    }

    /// Refuses a LAYOUT before anything is mapped or pinned: no regions, a total over `limit`
    /// (naming both sizes), a region the mapping would refuse, overlapping regions. Returns the
    /// guest's size and its regions.
    static func check(_ layout: MigrationMessage.Layout, limit: GuestSizeLimit) throws(MigrationError) -> (UInt64, [GuestMemoryRegionLayout]) {
        guard !layout.regions.isEmpty else { throw MigrationError(.layout, "LAYOUT has no memory region") }
        guard let total = layout.totalLength else {
            throw MigrationError(.layout, "LAYOUT's region lengths add up to more than 2^64 - 1 bytes")
        }
        guard total <= limit.bytes else {
            throw MigrationError(.layout, "the guest's \(ByteCount(total).humanReadable) (\(total) bytes) exceed this destination's limit of "
                + "\(ByteCount(limit.bytes).humanReadable) (\(limit.bytes) bytes: \(limit.reason)); nothing was mapped")
        }
        let regions = layout.regions.map {
            GuestMemoryRegionLayout(id: $0.id, guestPhysicalBase: $0.guestPhysicalBase, length: $0.length, pageSize: UInt64($0.pageSize))
        }
        var ids = Set<UInt32>()
        for region in regions {
            guard ids.insert(region.id).inserted else { throw MigrationError(.layout, "LAYOUT names region \(region.id) twice") }
            do {
                try region.validate()
            } catch {
                throw MigrationError(.layout, "LAYOUT: \(error)")
            }
        }
        let sorted = regions.sorted { $0.guestPhysicalBase < $1.guestPhysicalBase }
        for (left, right) in zip(sorted, sorted.dropFirst()) where left.guestPhysicalRange.overlaps(right.guestPhysicalRange) {
            throw MigrationError(.layout, "LAYOUT regions \(left.id) and \(right.id) overlap in guest-physical memory")
        }
        return (total, regions)
    }

    /// Adds a count the source sent into a report total; refuses a sum that does not fit.
    static func add(_ value: UInt64, to total: inout UInt64, _ message: String, _ field: String) throws(MigrationError) {
        try IncomingPages.add(value, to: &total, message, field)
    }

    /// Compares this side's memory and VF state with the source's digests; [] means equal.
    private func compare(_ digests: MigrationMessage.Digests, path: DestinationDataPath) -> [String] {
        var problems: [String] = []
        for region in path.memory.regions {
            guard let entry = digests.entries.first(where: { $0.subject == .region && $0.id == region.id }) else {
                problems.append("no digest for region \(region.id)")
                continue
            }
            guard let digester = path.digesters[region.id] else {
                problems.append("region \(region.id) has no digest on this side")
                continue
            }
            if entry.value != littleEndianBytes(digester.drain()) { problems.append("region \(region.id) memory differs from the source's") }
        }
        if let loader = path.loader {
            loader.waitForEnd(timeout: options.peerTimeout)
            if let failure = loader.failure { problems.append("VF state: \(failure)") }
            for device in path.devices where !loader.stopCopyComplete(tag: device.id) {
                problems.append("VF \(device.provider.name): stop-copy state incomplete")
            }
        }
        for device in path.devices {
            guard let entry = digests.entries.first(where: { $0.subject == .device && $0.id == device.id }) else { continue }
            do {
                guard let local = try device.provider.stateDigest() else { continue }
                if entry.value != local.encoded {
                    let remote = DeviceStateDigest(encoded: entry.value).map { "\($0)" } ?? "unreadable"
                    problems.append("VF \(device.provider.name) state differs: source \(remote), destination \(local)")
                }
            } catch {
                problems.append("VF \(device.provider.name) digest: \(error)")
            }
        }
        return problems
    }
}

/// What the destination holds of the incoming guest.
enum IncomingGuest {
    /// Pages and state are arriving: any failure discards them; nothing runs here.
    case receiving
    /// READY went out: verified, held paused until COMMIT (or, the source lost, its RESOLVE).
    case verified(GuestMemory, [any DeviceStateProvider])
    /// COMMIT arrived: the guest runs here, whatever happens to the connection.
    case running(GuestMemory)
    /// Given up: nothing of it is kept.
    case discarded
}
