#if canImport(Glibc)
import Glibc
#endif
import Logging
import RdmigChannels
import RdmigDeviceState
import RdmigMigration
import RdmigQEMU
import RdmigSystem
import RdmigTransport
import Synchronization

/// `rdmig source --qemu-qmp`: carries a running QEMU's own migration stream to a
/// `rdmig dest --qemu-qmp` over rdmig's transport.
///
/// Sequence: QMP connect; transport connect, HELLO/AUTH (QEMU mode announced, so a native
/// peer refuses clearly); LAYOUT with no memory regions, listing the VF state providers;
/// the destination's STREAM_RINGs (probe, QEMU stream, VF state); a timed burst over the
/// probe ring sets QEMU's `max-bandwidth` (unless given); then `QEMUMigrationSource` runs
/// QEMU's `migrate uri=fd:` with the relay on the QEMU-stream channel. With VF providers,
/// QEMU pauses at `pre-switchover` (guest stopped) and the hook moves each provider's
/// STOP_COPY state over the VF-state channel, sends VF_STATE_DONE and DIGESTS, and waits for
/// the destination's READY before `migrate-continue`. The destination's QEMU_OUTCOME ends it.
///
/// Exactly one running copy: any failure before QEMU completes leaves the guest running here
/// (the driver cancels and resumes it). If the relay fails after QEMU completed, the guest
/// stays stopped here until the destination says it will not run it (`neverRan`): only then
/// is it resumed with `cont`. QEMU waits at pre-switchover no longer than the switchover
/// budget. A SIGKILL runs none of this: the QEMU watchdog (QEMUSourceWatchdog), started
/// before QEMU's settings change and released at the end of `run`, recovers QEMU then.
public final class QEMUModeSource: @unchecked Sendable {
    public struct Options {
        public var qmpPath: String
        public var endpoint: TransportEndpoint
        public var backend: any TransportBackend
        public var transportOptions: TransportOptions
        public var deviceSpecs: [String]
        public var key: PreSharedKey
        public var peerTimeout: Duration = .seconds(60)
        /// QEMU's downtime-limit (rdmig's [migration] downtime-limit).
        public var downtimeLimit: Duration = .milliseconds(50)
        /// Set QEMU's max-bandwidth to this instead of measuring the transport.
        public var maxBandwidth: ByteRate?
        /// The probe's limits: whichever comes first.
        public var probeBytes: UInt64 = 256 << 20
        public var probeDuration: Duration = .milliseconds(200)
        /// ib-sw object changes per second while the guest runs, so the VF state that moves
        /// at switchover is not the state it started with.
        public var deviceChangesPerSecond: Int = 20_000
        /// The whole QEMU migration.
        public var migrationTimeout: Duration = .seconds(600)
        /// Longest QEMU waits at pre-switchover with the guest stopped ([migration]
        /// switchover-budget): past it the migration is cancelled and the guest resumes here.
        public var switchoverBudget: Duration = .seconds(1)
        /// The QEMU watchdog to start before QEMU's settings change (nil: none; a SIGKILL then
        /// leaves QEMU as it was at that moment).
        public var watchdog: QEMUSourceWatchdog.Launch?
        /// CPUs for the stream relay thread (the transport's own threads take theirs from
        /// `transportOptions`); empty: anywhere.
        public var relayCPUs: [Int32] = []
        public var logger = Logger(label: "rdmig.qemu-mode.source")

        public init(qmpPath: String, endpoint: TransportEndpoint, backend: any TransportBackend,
                    transportOptions: TransportOptions, deviceSpecs: [String], key: PreSharedKey) {
            self.qmpPath = qmpPath
            self.endpoint = endpoint
            self.backend = backend
            self.transportOptions = transportOptions
            self.deviceSpecs = deviceSpecs
            self.key = key
        }
    }

    typealias Device = SourceDevice

    /// Channel sizes: 16 x 256 KiB in flight for QEMU's stream (QEMU writes in 32 KiB
    /// buffers, qemu-file.c IO_BUF_SIZE, so a slot gathers several), 8 x 256 KiB for VF
    /// state as in native mode; the probe uses the QEMU stream's slot size.
    static let streamConfiguration = ByteStreamReceiver.Configuration(slotCount: 16, slotSize: 256 * 1024)
    static let deviceStateConfiguration = ByteStreamReceiver.Configuration(slotCount: 8, slotSize: 256 * 1024)
    static let probeConfiguration = ByteStreamReceiver.Configuration(slotCount: 8, slotSize: 256 * 1024)

    let options: Options
    private var logger: Logger { options.logger }
    private var session: MigrationSession?
    private var pump: ControlPump?
    private var devices: [Device] = []
    private var deviceStream: ByteStreamSender?
    private var streamSender: ByteStreamSender?
    private var vfStateBytes: UInt64 = 0
    private var watchdog: QEMUSourceWatchdog?

    /// What the watchdog allows past the switchover budget before it kills this service: room
    /// for the service's own abort at the budget (migrate_cancel, QEMU's `cancelled`, `cont`),
    /// so that a service that keeps its budget is never killed.
    static let watchdogGrace: Duration = .seconds(2)

    public init(options: Options) {
        self.options = options
    }

    public func run() async -> QEMUModeReport {
        let start = ContinuousClock.now
        var report = QEMUModeReport(role: "source")
        report.downtimeLimitMilliseconds = options.downtimeLimit.milliseconds
        var qmp: QMPClient?
        do {
            let client: QMPClient
            do {
                client = try await QMPClient.connect(to: options.qmpPath, logger: logger)
            } catch {
                throw MigrationError(.setup, "connecting to the source QEMU's QMP socket \(options.qmpPath): \(error)")
            }
            qmp = client
            report.qemuVersion = client.version.description
            let (probe, rate) = try await blocking("rdmig-setup") { try self.setUp() }
            report.probe = probe.map { .init(bytes: $0.bytes, elapsed: $0.elapsed) }
            report.maxBandwidthBytesPerSecond = rate.bytesPerSecond
            try await migrate(qmp: client, report: &report)
        } catch {
            report.status = .failed
            report.error = report.error ?? "\(error)"
            if report.guestLocation == nil {
                // Nothing was started in QEMU yet: the guest never stopped.
                report.guestLocation = qmp == nil ? "source (untouched)" : "source (running; the migration never started)"
            }
            pump?.abort(report.error!)
            if pump == nil { session?.abort(report.error!) }
            for device in devices { try? device.provider.abortToRunning() }
        }
        for device in devices { device.mutator?.stop() }
        pump?.stop()
        session?.close()
        qmp?.close()
        // Last: until here a death leaves QEMU to the watchdog (QEMUSourceRecovery decides
        // from QEMU's state, so a death after this service's own clean-up changes nothing).
        watchdog?.release()
        report.wallTimeMilliseconds = (ContinuousClock.now - start).milliseconds
        return report
    }

    /// Runs blocking control-path work on its own thread (the pool has one thread per core).
    private func blocking<Value: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await DedicatedThread.run(name: name, body)
    }

    // MARK: - Before QEMU

    /// Connects, authenticates, opens the streams and measures the transport; returns the
    /// probe's figures (nil when max-bandwidth was given) and QEMU's max-bandwidth.
    private func setUp() throws -> (BandwidthProbe.Measurement?, ByteRate) {
        devices = try SourceDevice.make(specs: options.deviceSpecs, changesPerSecond: options.deviceChangesPerSecond)
        let connection = try connectRetryingRefusal(options.backend, to: options.endpoint, options: options.transportOptions)
        let opened = try MigrationSession(connection: connection, role: .source, key: options.key,
                                          handshakeTimeout: options.transportOptions.handshakeTimeout,
                                          routerConfiguration: CompletionRouter.Configuration(), features: MigrationSession.qemuModeFeatures)
        session = opened
        logger.info("authenticated \(options.endpoint) (\(opened.peerHello?.software ?? "?")) over \(connection.backend)")

        let layout = MigrationMessage.Layout(
            regions: [],
            devices: devices.map { .init(id: $0.id, kind: $0.provider.name, stateVersion: $0.provider.streamVersion, needsSwitchoverAck: false) })
        try opened.send(.layout(layout), .layout)
        var rings: [ChannelID: StreamRing] = [:]
        let expected: [ChannelID] = [.bandwidthProbe, .qemuStream] + (devices.isEmpty ? [] : [.deviceState])
        while rings.count < expected.count {
            guard case .streamRing(let ring) = try opened.receive(.layout, during: "waiting for the destination's stream rings", timeout: options.peerTimeout),
                  expected.contains(ring.channel) else {
                throw MigrationError(.layout, "the destination answered LAYOUT with something other than its stream rings")
            }
            rings[ring.channel] = ring
        }
        if !devices.isEmpty {
            deviceStream = try channel { () throws(ChannelError) in try ByteStreamSender(router: opened.router, ring: rings[.deviceState]!) }
        }
        let probeSender = try channel { () throws(ChannelError) in try ByteStreamSender(router: opened.router, ring: rings[.bandwidthProbe]!) }
        let probe = try channel { () throws(ChannelError) in
            try BandwidthProbe.send(over: probeSender, maxBytes: options.maxBandwidth == nil ? options.probeBytes : UInt64(probeSender.ring.slotSize),
                                    maxDuration: options.probeDuration, timeout: options.peerTimeout)
        }
        probeSender.close()
        let rate = options.maxBandwidth ?? probe.bandwidth
        logger.info("transport probe: \(ByteCount(probe.bytes).humanReadable) in \(formatFixed(probe.elapsed.milliseconds, decimals: 1)) ms; QEMU max-bandwidth \(rate)")
        streamSender = try channel { () throws(ChannelError) in try ByteStreamSender(router: opened.router, ring: rings[.qemuStream]!) }
        return (options.maxBandwidth == nil ? probe : nil, rate)
    }

    private func channel<Value>(_ body: () throws(ChannelError) -> Value) throws(MigrationError) -> Value {
        do {
            return try body()
        } catch {
            throw MigrationError.channel(error, .layout, during: "opening the streams")
        }
    }


    // MARK: - QEMU's migration

    private func migrate(qmp: QMPClient, report: inout QEMUModeReport) async throws {
        guard let session, let streamSender else { preconditionFailure("migrate() before setUp()") }
        let configuration = QEMUSourceConfiguration(
            maxBandwidth: ByteRate(bytesPerSecond: report.maxBandwidthBytesPerSecond ?? 0),
            downtimeLimit: options.downtimeLimit, timeout: options.migrationTimeout)
        let relay = ChannelOutgoingRelay(sender: streamSender, creditTimeout: options.peerTimeout, cpus: options.relayCPUs)
        let budget = options.switchoverBudget
        let hook: QEMUMigrationHook? = devices.isEmpty ? nil : { @Sendable [self] in
            let deadline = ContinuousClock.now + budget
            do {
                try await blocking("rdmig-vf-stop-copy") { try self.moveDeviceState(until: deadline) }
            } catch let error where ContinuousClock.now >= deadline {
                throw MigrationError(.switchover, "the switchover budget of \(formatFixed(budget.milliseconds, decimals: 0)) ms "
                    + "([migration] switchover-budget) ran out with QEMU at pre-switchover: \(error)")
            }
        }
        if let launch = options.watchdog {
            watchdog = QEMUSourceWatchdog(launch: launch, preSwitchoverLimit: budget + Self.watchdogGrace, logger: logger)
        }
        let driver = QEMUMigrationSource(qmp: qmp, configuration: configuration, relay: relay, preSwitchover: hook,
                                         watch: watchdog, logger: logger)

        // The pump runs before QEMU's migration starts, so the hook finds it; a peer failure
        // cancels the driver's task, which stops QEMU's migration and resumes the guest here.
        let canceller = TaskCanceller()
        let pump = ControlPump(session: session) { [logger] failure in
            guard canceller.cancel() else { return }
            logger.warning("\(failure): abandoning the QEMU migration")
        }
        self.pump = pump
        try pump.start()
        let task = Task { try await driver.migrate() }
        canceller.attach { task.cancel() }

        // A cancelled run (a signal to this service) abandons QEMU's migration the same way.
        let result: Result<QEMUSourceReport, any Error> = await withTaskCancellationHandler {
            await task.result
        } onCancel: {
            _ = canceller.cancel()
        }
        canceller.finish()
        switch result {
        case .success(let source):
            fill(&report, from: source)
            try await blocking("rdmig-fault") { FaultInjection.stall(at: "source-stall-after-qemu-completed") }
            let outcome = try await awaitOutcome()
            try conclude(&report, source: source, outcome: outcome)
        case .failure(let error):
            try await failed(&report, error: error, qmp: qmp)
        }
    }

    /// The pre-switchover hook: the guest is stopped; move each VF's STOP_COPY state, then
    /// wait until the destination loaded and verified it (READY), all before `deadline`.
    private func moveDeviceState(until deadline: ContinuousClock.Instant) throws {
        guard let stream = deviceStream, let pump else { return }
        FaultInjection.stall(at: "source-stall-at-pre-switchover")
        // Each wait gets what is left of the budget, at most the peer timeout.
        func timeout() -> Duration { max(.milliseconds(1), min(options.peerTimeout, deadline - ContinuousClock.now)) }
        var encoder = ChunkRecordEncoder()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: ChunkRecordHeader.size + ChunkRecordHeader.defaultMaxPayload, alignment: 64)
        defer { buffer.deallocate() }
        var entries: [MigrationMessage.Digest] = []
        for index in devices.indices {
            devices[index].mutator?.stop()
            let name = devices[index].provider.name
            do {
                try devices[index].provider.enterStopCopy()
            } catch {
                throw MigrationError(.switchover, "VF \(name): \(error)")
            }
            var records: UInt64 = 0
            while true {
                let length: Int?
                do {
                    length = try devices[index].sender.nextStopCopyRecord(encoder: &encoder, into: buffer)
                } catch {
                    throw MigrationError(.switchover, "VF \(name) stop-copy: \(error)")
                }
                guard let length else { break }
                records += 1
                do {
                    try stream.write(UnsafeRawBufferPointer(rebasing: buffer[0..<length]), timeout: timeout())
                } catch {
                    throw MigrationError.channel(error, .switchover, during: "streaming VF \(name) stop-copy state")
                }
            }
            do {
                try stream.flush(timeout: timeout())
            } catch {
                throw MigrationError.channel(error, .switchover, during: "streaming VF \(name) stop-copy state")
            }
            let bytes = devices[index].sender.stopCopyBytes
            vfStateBytes += bytes
            try pump.send(.vfStateDone(.init(deviceID: devices[index].id, phase: .stopCopy, bytes: bytes, records: records, checksum: 0)), .switchover)
            do {
                if let digest = try devices[index].provider.stateDigest() {
                    entries.append(.init(subject: .device, id: devices[index].id, algorithm: .deviceState, value: digest.encoded))
                }
            } catch {
                throw MigrationError(.switchover, "VF \(name) digest: \(error)")
            }
        }
        try pump.send(.digests(.init(entries: entries)), .switchover)
        _ = try pump.expect("READY (the destination loads and verifies the VF state)", timeout: timeout()) {
            if case .ready = $0 { return true } else { return false }
        }
        // A READY that was already queued when a late wait began still comes after the
        // budget: as in native mode, a switchover past its budget is abandoned, not continued.
        if ContinuousClock.now > deadline {
            throw MigrationError(.switchover, "READY came after the switchover budget")
        }
        // From here the VF state lives on the destination; this side's copy stays stopped.
        for device in devices { try? device.provider.transition(to: .stop) }
    }

    /// The destination's last word. It resumes the guest before answering, so the wait
    /// covers its load, hook, `cont` and RESUME.
    private func awaitOutcome(timeout: Duration? = nil) async throws -> MigrationMessage.QEMUOutcome {
        guard let pump else { preconditionFailure("no control pump") }
        let timeout = timeout ?? options.peerTimeout
        let message = try await blocking("rdmig-outcome") {
            try pump.expect("QEMU_OUTCOME (the destination's result)", timeout: timeout) {
                if case .qemuOutcome = $0 { return true } else { return false }
            }
        }
        guard case .qemuOutcome(let outcome) = message else { preconditionFailure() }
        return outcome
    }

    private func fill(_ report: inout QEMUModeReport, from source: QEMUSourceReport) {
        report.qemu = .init(source.info, passes: source.passes)
        report.relay = .init(source.relay, withStall: true)
        report.preSwitchoverHookMilliseconds = source.preSwitchoverHookDuration?.milliseconds
        if !devices.isEmpty { report.vfStateBytes = vfStateBytes }
    }

    private func conclude(_ report: inout QEMUModeReport, source: QEMUSourceReport?, outcome: MigrationMessage.QEMUOutcome) throws {
        if outcome.relayMicroseconds > 0 || outcome.relayBytes > 0 {
            report.peerRelay = .init(bytes: outcome.relayBytes, elapsed: .microseconds(Int64(outcome.relayMicroseconds)))
        }
        guard outcome.guest == .resumed else {
            throw MigrationError(.commit, "the destination did not resume the guest: \(outcome.detail)")
        }
        if let stop = source?.stopTimestamp, outcome.resumeMicroseconds > 0 {
            let downtime = QEMUMigrationDowntime(
                sourceStop: stop,
                destinationResume: QMPTimestamp(seconds: Int64(outcome.resumeMicroseconds / 1_000_000), microseconds: Int64(outcome.resumeMicroseconds % 1_000_000)),
                qemuDowntimeMilliseconds: source?.info.downtimeMilliseconds)
            report.downtimeMilliseconds = downtime.duration.milliseconds
            logger.info("\(downtime)")
        } else {
            report.notes.append("no STOP/RESUME stamps from QEMU: the downtime could not be measured")
        }
        if !devices.isEmpty { report.vfStateVerified = true }
        report.status = .completed
        report.guestLocation = "destination (running)"
    }

    /// The driver failed. Before QEMU completed it resumed the guest here; after, the
    /// destination decides (note the exactly-one-running-copy rule).
    private func failed(_ report: inout QEMUModeReport, error: any Error, qmp: QMPClient) async throws {
        let peerFailure = pump?.peerFailure
        guard let qemuError = error as? QEMUMigrationError else {
            throw error
        }
        var description = "\(qemuError)"
        if let peerFailure, case .cancelled = qemuError.reason {
            // The cancellation was this side's answer to the peer's failure: say that first.
            description = "the destination failed (\(peerFailure)), so QEMU's migration was cancelled; guest: \(qemuError.guestState ?? "state unknown")"
        } else if let peerFailure {
            description += " (the destination: \(peerFailure))"
        }
        report.error = description
        if case .relayFailedAfterCompletion = qemuError.reason {
            // No ABORT: the destination may hold the whole stream and be about to run the
            // guest. Its verdict decides; a truncated stream makes it give up after its idle
            // timeout, so wait longer than that.
            let outcome = try? await awaitOutcome(timeout: options.peerTimeout * 2 + .seconds(30))
            switch outcome?.guest {
            case .resumed?:
                // The destination had the whole stream and runs the guest: that is a
                // completed migration, whatever the relay's last acknowledgement did.
                report.error = nil
                report.notes.append("the relay reported a failure after QEMU completed, but the destination resumed the guest: \(qemuError)")
                try conclude(&report, source: nil, outcome: outcome!)
                return
            case .neverRan?:
                do {
                    try await qmp.cont()
                    report.guestLocation = "source (resumed with cont: the destination confirmed it will not run the guest)"
                } catch {
                    report.guestLocation = "source (stopped: cont failed: \(error))"
                }
            default:
                report.guestLocation = "stopped on both sides: the destination did not confirm it will not run the guest "
                    + "(\(outcome?.detail ?? "no answer")); check the destination before resuming the source with cont"
            }
            throw qemuError
        }
        report.guestLocation = "source (\(qemuError.guestState ?? "state unknown"))"
        throw qemuError
    }
}
