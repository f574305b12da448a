import Logging
import RdmigChannels
import RdmigDeviceState
import RdmigMigration
import RdmigQEMU
import RdmigSystem
import RdmigTransport

/// `rdmig dest --qemu-qmp`: receives a QEMU migration stream from `rdmig source --qemu-qmp`
/// and feeds it to a QEMU started with `-incoming defer -S`.
///
/// Sequence: HELLO/AUTH (QEMU mode); LAYOUT (no memory regions; the VF state providers to
/// load); STREAM_RING for the probe, the QEMU stream and, with devices, the VF state; drain
/// the probe; then `QEMUMigrationDestination` runs `migrate-incoming uri=fd:` with the relay
/// writing the channel's slots into QEMU's socket. VF state arrives while the source is at
/// pre-switchover: the loader feeds the providers, DIGESTS are checked, READY goes back.
/// After QEMU's `completed` the hook finishes the VF resume, then `cont`; QEMU_OUTCOME tells
/// the source what became of the guest, with QEMU's completed and RESUME stamps.
///
/// Nothing runs here unless QEMU completed loading the whole stream: any earlier failure
/// (the source's ABORT, a broken stream, QEMU's own error) leaves the guest unstarted and
/// QEMU is told to quit; the source keeps (or resumes) its copy.
public final class QEMUModeDestination: @unchecked Sendable {
    public struct Options {
        public var key: PreSharedKey
        public var peerTimeout: Duration = .seconds(60)
        /// How long the source may take to authenticate (see `TransportOptions.handshakeTimeout`).
        public var handshakeTimeout: Duration = .seconds(5)
        /// CPUs for the stream relay thread (the transport's own threads take theirs from
        /// its options); empty: anywhere.
        public var relayCPUs: [Int32] = []
        public var logger = Logger(label: "rdmig.qemu-mode.dest")

        public init(key: PreSharedKey) {
            self.key = key
        }
    }

    struct Device {
        let id: UInt32
        let provider: any DeviceStateProvider
    }

    let options: Options
    let qmp: QMPClient
    private var logger: Logger { options.logger }
    private var session: MigrationSession?
    private var pump: ControlPump?
    private var devices: [Device] = []
    private var loader: DeviceStateLoader?
    private var streamReceiver: ByteStreamReceiver?

    /// `qmp` is the destination QEMU's (started with `-incoming defer -S`), already connected.
    public init(options: Options, qmp: QMPClient) {
        self.options = options
        self.qmp = qmp
    }

    /// Checks that QEMU waits for an incoming migration, before anything listens: a wrongly
    /// started QEMU is reported at once, not after the source connected.
    public static func checkReady(_ qmp: QMPClient) async throws -> QEMURunStatus {
        let status = try await qmp.queryStatus()
        guard status.isWaitingForIncomingMigration else {
            throw MigrationError(.setup, "the destination QEMU (\(qmp.path)) is \(status), not waiting for an incoming migration: start it with -incoming defer -S")
        }
        return status
    }

    /// Authenticates the source on an accepted connection, then serves it to its end.
    public func run(connection: any TransportConnection) async -> QEMUModeReport {
        do {
            let session = try await DedicatedThread.run(name: "rdmig-handshake") {
                try MigrationSession(connection: connection, role: .destination, key: self.options.key,
                                     handshakeTimeout: self.options.handshakeTimeout,
                                     routerConfiguration: CompletionRouter.Configuration(), features: MigrationSession.qemuModeFeatures)
            }
            return await run(session: session)
        } catch {
            var report = QEMUModeReport(role: "destination")
            report.qemuVersion = qmp.version.description
            report.status = .failed
            report.error = "\(error)"
            report.guestLocation = "not here (never ran)"
            return report
        }
    }

    /// Serves an authenticated session to its end.
    package func run(session authenticated: MigrationSession) async -> QEMUModeReport {
        let start = ContinuousClock.now
        var report = QEMUModeReport(role: "destination")
        report.qemuVersion = qmp.version.description
        var outcome = MigrationMessage.QEMUOutcome(guest: .neverRan, completedMicroseconds: 0, resumeMicroseconds: 0,
                                                   relayBytes: 0, relayMicroseconds: 0, detail: "")
        do {
            try await DedicatedThread.run(name: "rdmig-setup") { try self.setUp(session: authenticated) }
            try await receive(report: &report, outcome: &outcome)
            do {
                try pump?.send(.qemuOutcome(outcome), .commit)
            } catch {
                // The guest runs here whatever the source hears: the migration completed.
                report.notes.append("could not tell the source the guest runs here: \(error)")
            }
        } catch {
            report.status = .failed
            report.error = report.error ?? "\(error)"
            if report.guestLocation == nil { report.guestLocation = "not here (never ran)" }
            if outcome.guest == .resumed { outcome.guest = .loadedNotResumed }
            outcome.detail = report.error!
            // The source needs the verdict to decide whether it may resume its copy.
            if let pump {
                try? pump.send(.qemuOutcome(outcome), .commit)
            } else {
                session?.abort(report.error!)
            }
            for device in devices { try? device.provider.reset() }
        }
        pump?.stop()
        // Closing the channels wakes the loader's thread; it must be out of the stream before
        // the loader closes it (a stream is used by one thread at a time).
        session?.close()
        loader?.waitForEnd(timeout: .seconds(5))
        loader = nil
        report.wallTimeMilliseconds = (ContinuousClock.now - start).milliseconds
        return report
    }

    private func setUp(session opened: MigrationSession) throws {
        session = opened
        let connection = opened.connection
        logger.info("authenticated the source \(connection.peerEndpoint) (\(opened.peerHello?.software ?? "?")) over \(connection.backend)")
        guard case .layout(let layout) = try opened.receive(.layout, during: "waiting for LAYOUT", timeout: options.peerTimeout) else {
            throw MigrationError(.layout, "the source did not send LAYOUT after authenticating")
        }
        guard layout.regions.isEmpty else {
            throw MigrationError(.layout, "the source described guest memory regions: a QEMU-mode destination only relays QEMU's stream")
        }
        for entry in layout.devices {
            let provider = try DestinationDevice.resumingProvider(for: entry)
            devices.append(Device(id: entry.id, provider: provider))
        }
        let probe: ByteStreamReceiver
        do {
            probe = try ByteStreamReceiver(router: opened.router, channel: .bandwidthProbe, configuration: QEMUModeSource.probeConfiguration)
            let stream = try ByteStreamReceiver(router: opened.router, channel: .qemuStream, configuration: QEMUModeSource.streamConfiguration)
            streamReceiver = stream
            try opened.send(.streamRing(probe.ring), .layout)
            try opened.send(.streamRing(stream.ring), .layout)
            if !devices.isEmpty {
                let vf = try ByteStreamReceiver(router: opened.router, channel: .deviceState, configuration: QEMUModeSource.deviceStateConfiguration)
                try opened.send(.streamRing(vf.ring), .layout)
                loader = try DeviceStateLoader(stream: vf, providers: Dictionary(uniqueKeysWithValues: devices.map { ($0.id, $0.provider) }))
            }
        } catch let error as MigrationError {
            throw error
        } catch {
            throw MigrationError(.layout, "opening the streams: \(error)")
        }
        do {
            let bytes = try BandwidthProbe.drain(probe, timeout: options.peerTimeout)
            logger.info("bandwidth probe: \(ByteCount(bytes).humanReadable) received")
        } catch {
            throw MigrationError.channel(error, .layout, during: "receiving the bandwidth probe")
        }
        probe.close()
    }

    private func receive(report: inout QEMUModeReport, outcome: inout MigrationMessage.QEMUOutcome) async throws {
        guard let session, let streamReceiver else { preconditionFailure("receive() before setUp()") }
        let relay = ChannelIncomingRelay(receiver: streamReceiver, idleTimeout: options.peerTimeout, cpus: options.relayCPUs)
        let canceller = TaskCanceller()
        let pump = ControlPump(session: session) { [logger] failure in
            guard canceller.cancel() else { return }
            logger.warning("\(failure): abandoning the incoming QEMU migration")
        }
        self.pump = pump
        try pump.start()

        // With VF state: answer DIGESTS while the source waits at pre-switchover.
        var verification: Task<Void, any Error>?
        if loader != nil {
            verification = Task { try await DedicatedThread.run(name: "rdmig-vf-verify") { try self.verifyDeviceState() } }
        }
        let hook: QEMUMigrationHook? = verification.map { verification in
            { @Sendable [self] in
                try await verification.value
                try self.resumeDevices()
            }
        }
        let driver = QEMUMigrationDestination(qmp: qmp, configuration: QEMUDestinationConfiguration(), relay: relay,
                                              beforeResume: hook, logger: logger)
        let task = Task { try await driver.receive() }
        canceller.attach { task.cancel() }
        // A cancelled run (a signal to this service) abandons QEMU's migration the same way.
        let result = await withTaskCancellationHandler {
            await task.result
        } onCancel: {
            _ = canceller.cancel()
        }
        canceller.finish()
        switch result {
        case .success(let destination):
            report.qemu = .init(destination.info)
            report.relay = destination.relay.map { .init($0, withStall: false) }
            if let problem = destination.relayProblem { report.notes.append(problem) }
            report.beforeResumeHookMilliseconds = destination.beforeResumeHookDuration?.milliseconds
            if let loader {
                report.vfStateBytes = loader.stopCopyBytes
                report.vfStateVerified = true
            }
            outcome.guest = destination.runStatus.running ? .resumed : .loadedNotResumed
            outcome.completedMicroseconds = UInt64(max(0, destination.completedTimestamp?.microsecondsSinceEpoch ?? 0))
            outcome.resumeMicroseconds = UInt64(max(0, destination.resumeTimestamp?.microsecondsSinceEpoch ?? 0))
            outcome.relayBytes = destination.relay?.bytes ?? 0
            outcome.relayMicroseconds = UInt64(max(0, (destination.relay?.elapsed.milliseconds ?? 0) * 1000))
            guard outcome.guest == .resumed else {
                throw MigrationError(.commit, "QEMU completed but the guest is \(destination.runStatus) after cont")
            }
            report.status = .completed
            report.guestLocation = "destination (running)"
        case .failure(let error):
            var description = "\(error)"
            if let peer = pump.peerFailure { description += " (the source: \(peer))" }
            report.error = description
            if let qemuError = error as? QEMUMigrationError {
                let state = qemuError.guestState ?? ""
                // The driver words a failure after QEMU completed as "... complete state loaded ...":
                // then this side holds a full copy, and the source must not resume on its own.
                outcome.guest = state.contains("complete state loaded") || state.hasPrefix("unknown") ? .loadedNotResumed : .neverRan
                report.guestLocation = outcome.guest == .neverRan ? "not here (\(state.isEmpty ? "never ran" : state))" : "destination: \(state)"
            }
            throw error
        }
    }

    /// VF_STATE_DONE per device, then DIGESTS: wait until the loader has every device's
    /// stop-copy state, compare digests, answer READY (or ERROR, which fails the migration).
    private func verifyDeviceState() throws {
        guard let pump, let loader else { return }
        while true {
            guard let message = try pump.next(timeout: .seconds(3600)) else { continue }
            switch message {
            case .vfStateDone:
                continue
            case .digests(let digests):
                loader.waitForEnd(timeout: options.peerTimeout)
                var problems: [String] = []
                if let failure = loader.failure { problems.append("VF state: \(failure)") }
                for device in devices {
                    if !loader.stopCopyComplete(tag: device.id) {
                        problems.append("VF \(device.provider.name): stop-copy state incomplete")
                        continue
                    }
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
                if !problems.isEmpty {
                    let reason = "VF state verification failed: " + problems.joined(separator: "; ")
                    try? pump.send(.error(.init(code: 1, message: reason)), .switchover)
                    throw MigrationError(.switchover, reason)
                }
                logger.info("VF state loaded and verified (\(ByteCount(loader.stopCopyBytes).humanReadable))")
                try pump.send(.ready, .switchover)
                return
            default:
                throw MigrationError(.switchover, "unexpected \(message.wireName) from the source while waiting for VF state")
            }
        }
    }

    /// Before `cont`: the VF state was verified; the devices leave RESUMING and run.
    private func resumeDevices() throws {
        for device in devices {
            do {
                try device.provider.finishResuming(run: true)
            } catch {
                throw MigrationError(.commit, "VF \(device.provider.name) did not resume: \(error)")
            }
        }
    }
}
