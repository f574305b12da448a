#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigChannels
import RdmigDeviceState
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

    /// The verified, resumed guest memory after a completed migration (nil otherwise).
    public private(set) var memory: GuestMemory?
    /// The verified guest and its devices, once READY went out and until COMMIT: what is held
    /// paused if the source is lost in between.
    private var verified: (memory: GuestMemory, devices: [any DeviceStateProvider])?
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

    /// Authenticates the source on an accepted connection, then serves it to its end.
    public func run(connection: any TransportConnection) -> MigrationReport {
        let start = clock.now
        let session: MigrationSession
        do {
            session = try MigrationSession(connection: connection, role: .destination, key: options.key,
                                           handshakeTimeout: options.handshakeTimeout,
                                           routerConfiguration: Self.routerConfiguration(pollerCPUs: options.pollerCPUs),
                                           encryption: options.encryption)
        } catch {
            var report = MigrationReport(status: .failed)
            report.errorDescription = error.description
            report.guestLocation = "not here (incoming guest discarded)"
            options.log("migration failed: \(error.description); the incoming guest was discarded")
            report.totalTime = (clock.now - start).milliseconds
            return report
        }
        return run(session: session, start: start)
    }

    /// Serves an authenticated session: a migration (its report), or a source's RESOLVE for
    /// an earlier one, answered from the ledger (nil: no migration report).
    package func serve(session: MigrationSession) -> MigrationReport? {
        session.stopReason = options.stopRequested
        let first: MigrationMessage
        do {
            first = try session.receive(.layout, during: "waiting for LAYOUT", timeout: options.peerTimeout)
        } catch {
            return run(session: session, failure: error)
        }
        if case .resolve(let resolve) = first {
            (options.ledger ?? ResolutionLedger()).answer(resolve, on: session, log: options.log)
            return nil
        }
        return run(session: session, first: first)
    }

    /// Serves an authenticated session to its end.
    package func run(session: MigrationSession, start: ContinuousClock.Instant? = nil, first: MigrationMessage? = nil,
                     failure: MigrationError? = nil) -> MigrationReport {
        let start = start ?? clock.now
        var report = MigrationReport(status: .setup)
        report.encrypted = session.encrypted
        let connection = session.connection
        session.stopReason = options.stopRequested
        options.log("authenticated the source \(connection.peerEndpoint) (\(session.peerHello?.software ?? "?")) over \(connection.backend)")
        var lost: MigrationError?
        do throws(MigrationError) {
            if let failure { throw failure }
            try receive(session: session, report: &report, start: start, first: first)
        } catch {
            let reason = error.description
            let stopped = options.stopRequested?() != nil && session.interruptible.load(ordering: .acquiring)
            if verified != nil, !error.peerGaveUp, !stopped, options.nextSession != nil {
                lost = error
            } else {
                report.status = stopped ? .cancelled : .failed
                report.errorDescription = reason
                report.guestLocation = "not here (incoming guest discarded)"
                options.log("migration failed: \(reason); the incoming guest was discarded")
                session.abort(reason)
                verified = nil
                memory = nil
            }
        }
        let delivered = session.close()
        if report.status == .completed {
            options.ledger?.record(session.keys.migrationID, .runsOnDestination, "it had COMMIT and resumed")
            if !delivered {
                resumptionUnconfirmed = true
                options.log("the source may not have heard RESUMED: it can ask where the guest runs (RESOLVE)")
            }
        } else if let lost {
            awaitResolution(session: session, report: &report, lost: lost)
        } else {
            options.ledger?.record(session.keys.migrationID, .notOnDestination, "it discarded its copy: \(report.errorDescription ?? "failed")")
        }
        report.totalTime = (clock.now - start).milliseconds
        return report
    }

    private func receive(session: MigrationSession, report: inout MigrationReport, start: ContinuousClock.Instant,
                         first: MigrationMessage?) throws(MigrationError) {
        let connection = session.connection
        let opening: MigrationMessage
        if let first {
            opening = first
        } else {
            opening = try session.receive(.layout, during: "waiting for LAYOUT", timeout: options.peerTimeout)
        }
        guard case .layout(let layout) = opening else {
            throw MigrationError(.layout, "the source did not send LAYOUT after authenticating")
        }
        let limit = options.maximumGuestBytes.map { GuestSizeLimit(bytes: $0, reason: "[service] max-guest-size") } ?? GuestSizeLimit.current()
        let (total, guestLayouts) = try Self.check(layout, limit: limit)
        let guestPages = UInt64(guestLayouts.reduce(0) { $0 + $1.pageCount })
        let mapStart = clock.now
        // Faulting the guest's memory in is most of this side's setup; a thread per CPU the
        // hot path may use (or this process may) does it in parallel, and on the hot path's
        // CPUs the pages land on the NIC's node.
        let cpus = options.pollerCPUs.isEmpty ? ((try? SystemThread.currentAffinity()) ?? []) : options.pollerCPUs
        let pinThreads = min(max(cpus.count, 1), 8)
        let guestMemory: GuestMemory
        do {
            guestMemory = try GuestMemory.map(
                layouts: guestLayouts,
                backing: options.memoryBacking, pin: true, pinThreads: pinThreads, pinCPUs: options.pollerCPUs)
        } catch {
            throw MigrationError(.layout, "mapping the guest's memory: \(error)")
        }
        options.log("mapped and pinned \(ByteCount(total).humanReadable) of guest memory in \(formatFixed((clock.now - mapStart).milliseconds, decimals: 0)) ms (\(pinThreads) thread\(pinThreads == 1 ? "" : "s"))")

        var registrations: [MemoryRegistration] = []
        var windows: [MigrationMessage.RegionWindow] = []
        var digesters: [UInt32: ChunkDigester] = [:]
        // Every outcome stops the digest threads here: each holds its region, so one left
        // running would keep the guest mapped and pinned after the migration ended.
        defer { for digester in digesters.values { digester.close() } }
        for region in guestMemory.regions {
            do {
                let registration = try connection.register(region.bytes(of: 0..<region.pageCount), access: [.localWrite, .remoteWrite])
                registrations.append(registration)
                windows.append(.init(regionID: region.id, window: registration.window()))
                let chunkSize = ChunkDigester.chunkSize(pageSize: region.pageSize)
                digesters[region.id] = try ChunkDigester(region: region, chunkSize: chunkSize, seed: session.keys.digestSeed)
            } catch {
                throw MigrationError(.layout, "exporting region \(region.id): \(error)")
            }
        }
        defer { for registration in registrations { _ = try? connection.deregister(registration) } }

        var devices: [Device] = []
        for entry in layout.devices {
            let provider = try DestinationDevice.resumingProvider(for: entry)
            devices.append(Device(id: entry.id, provider: provider, needsAck: entry.needsSwitchoverAck))
        }
        try session.send(.windows(.init(regions: windows)), .layout)

        var loader: DeviceStateLoader?
        defer { loader?.close() }
        if !devices.isEmpty {
            do {
                let stream = try ByteStreamReceiver(router: session.router, channel: .deviceState,
                                                    configuration: .init(slotCount: 8, slotSize: 256 * 1024))
                try session.send(.streamRing(stream.ring), .layout)
                loader = try DeviceStateLoader(stream: stream, providers: Dictionary(uniqueKeysWithValues: devices.map { ($0.id, $0.provider) }))
            } catch let error as MigrationError {
                throw error
            } catch {
                throw MigrationError(.layout, "opening the VF state stream: \(error)")
            }
        }
        report.setupTime = (clock.now - start).milliseconds
        report.status = .active

        var switchoverAt: ContinuousClock.Instant?
        var lastMessageAt = clock.now
        // Giving up from here on, the source hears why before the windows above are withdrawn
        // (their defers run after this catch): otherwise its next write fails as a refused
        // access and hides the reason.
        do throws(MigrationError) {
            while true {
                // SWITCHOVER_ACK goes out from here, the one thread that sends on the control channel.
                if let loader {
                    for index in devices.indices where devices[index].needsAck && !devices[index].acknowledged && loader.initialDataLoaded(tag: devices[index].id) {
                        try session.send(.switchoverAck(.init(deviceID: devices[index].id)), .precopy)
                        devices[index].acknowledged = true
                    }
                    if let failure = loader.failure { throw MigrationError(.precopy, "loading VF state: \(failure)") }
                }
                // With a VF stream the wait is short, so SWITCHOVER_ACK goes out soon after the
                // loader has the initial state; silence is still bounded by the peer timeout.
                guard let message = try session.receiveIfAny(.precopy, during: "receiving from the source",
                                                             timeout: loader == nil ? options.peerTimeout : .milliseconds(20)) else {
                    if clock.now - lastMessageAt > options.peerTimeout {
                        throw MigrationError(.precopy, "the source sent nothing for \(formatFixed(options.peerTimeout.seconds, decimals: 0)) s")
                    }
                    continue
                }
                lastMessageAt = clock.now
                switch message {
                case .zeroPages(let zero):
                    guard let region = try? guestMemory.region(id: zero.regionID) else {
                        throw MigrationError(.precopy, "ZERO_PAGES for unknown region \(zero.regionID)")
                    }
                    let applied: UInt64
                    do {
                        applied = try PageChannel.applyZeroPages(zero, to: region.bytes(of: 0..<region.pageCount), pageSize: region.pageSize)
                    } catch {
                        throw MigrationError(.precopy, "applying ZERO_PAGES: \(error)")
                    }
                    try Self.add(applied, to: &report.zeroPages, "ZERO_PAGES", "runs.count")
                case .iterationDone(let done):
                    // An iteration sends each page once at most: larger counts are not the source's.
                    for (field, value, most) in [("pagesWritten", done.pagesWritten, guestPages), ("zeroPages", done.zeroPages, guestPages),
                                                 ("bytesWritten", done.bytesWritten, total)] where value > most {
                        throw MigrationError(.precopy, "ITERATION_DONE \(done.iteration) has \(field) \(value), more than the guest's \(most)")
                    }
                    report.iterations = Int(done.iteration) + 1
                    try Self.add(done.pagesWritten, to: &report.normalPages, "ITERATION_DONE", "pagesWritten")
                    try Self.add(done.bytesWritten, to: &report.normalBytes, "ITERATION_DONE", "bytesWritten")
                    try Self.add(done.bytesWritten, to: &report.transferred, "ITERATION_DONE", "bytesWritten")
                    if done.iteration == 0 { FaultInjection.stall(at: "dest-stall-in-precopy") }

                case .touchedChunks(let touched):
                    guard let digester = digesters[touched.regionID], Int(touched.chunkSize) == digester.chunkSize else {
                        throw MigrationError(.precopy, "TOUCHED_CHUNKS for region \(touched.regionID) with chunks of \(touched.chunkSize) bytes does not match this side's digest layout")
                    }
                    let bitmapBytes = (digester.chunkCount + 7) / 8
                    let firstByte = Int(touched.firstChunk) / 8
                    guard firstByte <= bitmapBytes, touched.bitmap.count <= bitmapBytes - firstByte else {
                        throw MigrationError(.precopy, "TOUCHED_CHUNKS for region \(touched.regionID): firstChunk \(touched.firstChunk) and a \(touched.bitmap.count)-byte bitmap run past the region's \(digester.chunkCount) chunks")
                    }
                    digester.mark(touched.bitmap[...], firstChunk: Int(touched.firstChunk))
                    if touched.isLast {
                        let drainStart = clock.now
                        defer {
                            if switchoverAt != nil {
                                options.log("hashed the last iteration's pages in \(formatFixed((clock.now - drainStart).milliseconds, decimals: 1)) ms")
                            }
                        }
                        // Hash now, while the guest still runs on the source (which waits for this
                        // answer before deciding): a backlog would be hashed inside the downtime.
                        _ = digester.drain()
                        try session.send(.zeroPagesApplied(.init(iteration: touched.iteration)), .precopy)
                    }
                case .switchover(let switchover):
                    switchoverAt = clock.now
                    report.status = .device
                    FaultInjection.stall(at: "dest-stall-at-switchover")
                    options.log("source paused the guest (\(switchover.reason)); \(ByteCount(switchover.remainingDirtyBytes).humanReadable) of pages and \(ByteCount(switchover.deviceStopCopyBytes).humanReadable) of VF state follow")
                case .vfStateDone:
                    break
                case .digests(let digests):
                    let verifyStart = clock.now
                    let problems = verify(digests, memory: guestMemory, digesters: digesters, devices: devices, loader: loader)
                    options.log("verified memory and VF state in \(formatFixed((clock.now - verifyStart).milliseconds, decimals: 1)) ms")
                    if !problems.isEmpty {
                        let reason = "verification failed: " + problems.joined(separator: "; ")
                        try? session.control.send(MigrationMessage.error(.init(code: 1, message: reason)))
                        throw MigrationError(.switchover, reason)
                    }
                    report.verified = true
                    if let loader {
                        report.vfStateBytes = .init(preCopy: loader.precopyBytes, stopCopy: loader.stopCopyBytes)
                    }
                    verified = (guestMemory, devices.map(\.provider))
                try session.send(.ready, .switchover)
                FaultInjection.stall(at: "dest-stall-after-ready")
                case .commit:
                    guard report.verified else { throw MigrationError(.commit, "COMMIT before this side verified the guest") }
                    session.interruptible.store(false, ordering: .releasing)
                    // The guest is this side's from here, whatever happens to the connection.
                    verified = nil
                    for device in devices {
                        do {
                            try device.provider.finishResuming(run: true)
                        } catch {
                            // The source has let go of the guest: say so loudly, do not pretend.
                            options.log("VF \(device.provider.name) did not resume after COMMIT: \(error)")
                        }
                    }
                    memory = guestMemory
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
                    return
                default:
                    throw MigrationError(.precopy, "unexpected \(message.wireName) from the source")
                }
            }
        } catch {
            session.abort(error.description)
            throw error
        }
    }

    /// The source was lost after READY and before COMMIT: this side holds the verified guest
    /// paused and waits up to `resolveTimeout` for the source's RESOLVE on a new session. The
    /// source is paused too and asks only after it sent COMMIT, so on RESOLVE this side commits
    /// forward: resumes and answers that the guest runs here. Without RESOLVE the copy is
    /// dropped: a source that never sent COMMIT has resumed its own, one that did keeps its
    /// paused copy until it learns the outcome — never two running copies, never none known.
    private func awaitResolution(session lostSession: MigrationSession, report: inout MigrationReport, lost: MigrationError) {
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
            for provider in verified?.devices ?? [] {
                do {
                    try provider.finishResuming(run: true)
                } catch {
                    options.log("VF \(provider.name) did not resume after RESOLVE: \(error)")
                }
            }
            memory = verified?.memory
            verified = nil
            let detail = "it held the verified guest paused \(formatFixed(waited.seconds, decimals: 1)) s and committed on RESOLVE"
            options.ledger?.record(migrationID, .runsOnDestination, detail)
            try? session.send(.resolution(.init(outcome: .runsOnDestination, detail: detail)), .commit, timeout: .seconds(5))
            if !session.close() { resumptionUnconfirmed = true }
            report.status = .completed
            report.guestLocation = "destination (committed on the source's RESOLVE after \(formatFixed(waited.seconds, decimals: 1)) s)"
            options.log("the source came back and asked: the guest runs here (\(detail))")
            return
        }
        verified = nil
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
        let (sum, overflow) = total.addingReportingOverflow(value)
        guard !overflow else {
            throw MigrationError(.precopy, "\(message) '\(field)' \(value) overflows the total of \(total) received so far")
        }
        total = sum
    }

    /// Compares this side's memory and VF state with the source's digests; [] means equal.
    private func verify(_ digests: MigrationMessage.Digests, memory: GuestMemory, digesters: [UInt32: ChunkDigester],
                        devices: [Device], loader: DeviceStateLoader?) -> [String] {
        var problems: [String] = []
        for region in memory.regions {
            guard let entry = digests.entries.first(where: { $0.subject == .region && $0.id == region.id }) else {
                problems.append("no digest for region \(region.id)")
                continue
            }
            let local = littleEndianBytes(digesters[region.id]!.drain())
            if entry.value != local { problems.append("region \(region.id) memory differs from the source's") }
        }
        if let loader {
            loader.waitForEnd(timeout: options.peerTimeout)
            if let failure = loader.failure { problems.append("VF state: \(failure)") }
            for device in devices where !loader.stopCopyComplete(tag: device.id) {
                problems.append("VF \(device.provider.name): stop-copy state incomplete")
            }
        }
        for device in devices {
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

/// Reads the VF state stream on its own thread and feeds the providers, so the control thread
/// never blocks on device state.
package final class DeviceStateLoader: Sendable {
    /// The thread holds this, never the loader: a thread holding its owner keeps it alive while
    /// it runs, so the deinit that stops it never came (one thread, stream and ring leaked per
    /// migration with a VF on a `dest --keep-serving`).
    private let state: State
    private let thread: SystemThread

    package init(stream: ByteStreamReceiver, providers: [UInt32: any DeviceStateProvider]) throws(SystemCallError) {
        let state = State(stream: stream, providers: providers)
        self.state = state
        thread = try SystemThread(name: "rdmig-vf-load") { state.run() }
    }

    /// Stops and joins the thread, then closes the stream; calling it again does nothing.
    /// The stream is closed only after the join: a ByteStreamReceiver is used by one thread at
    /// a time (closing it under a blocked read traps).
    package func close() {
        state.stop()
        thread.join()
        state.stream.close()
    }

    deinit {
        close()
    }

    package var failure: String? { state.failure }
    package var precopyBytes: UInt64 { state.precopyBytes }
    package var stopCopyBytes: UInt64 { state.stopCopyBytes }
    package func initialDataLoaded(tag: UInt32) -> Bool { state.initialDataLoaded(tag: tag) }
    package func stopCopyComplete(tag: UInt32) -> Bool { state.stopCopyComplete(tag: tag) }

    /// Waits until every device's stop-copy state arrived or the stream ended.
    package func waitForEnd(timeout: Duration) { state.waitForEnd(timeout: timeout) }

    private final class State: @unchecked Sendable {
        let stream: ByteStreamReceiver
        private let condition = NSCondition()
        private var receiver: DeviceStateReceiver
        private var ended = false
        private var stopping = false
        private var error: String?
        /// How long one read waits before the thread looks whether it is being stopped.
        static let stopCheckInterval = Duration.milliseconds(50)

        init(stream: ByteStreamReceiver, providers: [UInt32: any DeviceStateProvider]) {
            self.stream = stream
            receiver = DeviceStateReceiver(providers: providers)
        }

        func run() {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 64)
            defer { buffer.deallocate() }
            while true {
                let count: Int
                do {
                    count = try stream.read(into: buffer, timeout: Self.stopCheckInterval)
                } catch .timedOut {
                    if isStopping { return }
                    continue
                } catch {
                    finish(error: "\(error)")
                    return
                }
                if count == 0 {
                    finish(error: nil)
                    return
                }
                condition.lock()
                do {
                    try receiver.receive(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
                } catch {
                    self.error = "\(error)"
                }
                let done = self.error != nil || receiver.allStopCopyComplete
                condition.broadcast()
                condition.unlock()
                if done {
                    finish(error: nil)
                    return
                }
            }
        }

        func stop() {
            condition.lock()
            stopping = true
            condition.unlock()
        }

        private var isStopping: Bool { condition.lock(); defer { condition.unlock() }; return stopping }

        private func finish(error: String?) {
            condition.lock()
            if let error, self.error == nil, !receiver.allStopCopyComplete { self.error = error }
            ended = true
            condition.broadcast()
            condition.unlock()
        }

        var failure: String? { condition.lock(); defer { condition.unlock() }; return error }
        var precopyBytes: UInt64 { condition.lock(); defer { condition.unlock() }; return receiver.precopyBytes }
        var stopCopyBytes: UInt64 { condition.lock(); defer { condition.unlock() }; return receiver.stopCopyBytes }

        func initialDataLoaded(tag: UInt32) -> Bool {
            condition.lock(); defer { condition.unlock() }
            return receiver.initialDataLoaded(tag: tag)
        }

        func stopCopyComplete(tag: UInt32) -> Bool {
            condition.lock(); defer { condition.unlock() }
            return receiver.stopCopyComplete(tag: tag)
        }

        /// Waits until every device's stop-copy state arrived or the stream ended.
        func waitForEnd(timeout: Duration) {
            let deadline = Date(timeIntervalSinceNow: timeout.seconds)
            condition.lock()
            while !ended && !receiver.allStopCopyComplete {
                if !condition.wait(until: deadline) { break }
            }
            condition.unlock()
        }
    }
}
