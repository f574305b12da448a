#if canImport(Glibc)
import RdmigTestSupport
import Glibc
#endif
import Foundation
import RdmigQEMU
import RdmigSystem
import Synchronization
import Testing

/// Real QEMU migrations on loopback: source QEMU → QEMUMigrationSource → loopback relay →
/// QEMUMigrationDestination → destination QEMU. One pair of small guests at a time (256 MiB,
/// 64 MiB working set dirtied at 20 MB/s, a heartbeat every 500 ms) under TCG.
@Suite("QEMU migrations through RdmigQEMU (real QEMU)", .serialized,
       .enabled(if: QEMUTestGuest.qemuAvailable, "qemu-system-x86_64 is not installed (Tests/qemu-guest/install-qemu.sh)"))
struct QEMUMigrationTests {
    static let maxBandwidth = ByteRate(bytesPerSecond: 10 << 30)
    /// Short limits: a hung step fails the test instead of the whole run.
    static let sourceConfiguration = QEMUSourceConfiguration(
        maxBandwidth: maxBandwidth, timeout: .seconds(60), abortTimeout: .seconds(15))
    static let destinationConfiguration = QEMUDestinationConfiguration(
        timeout: .seconds(60), resumeTimeout: .seconds(15), relayGracePeriod: .seconds(10), abortTimeout: .seconds(15))

    typealias Pair = QEMUTestPair

    func startPair(_ test: String) async throws -> Pair {
        try await QEMUTestPair.start("rq\(getpid())-\(test)", sockets: .rdmig, label: "rdmig QEMU test \(test)")
    }

    /// The destination's heartbeats continue the source's count, page errors stay 0.
    func expectGuestContinues(on destination: QEMUTestGuest, after source: QEMUTestGuest) async throws {
        let sourceBeats = source.heartbeats()
        let destinationBeats = try await destination.waitForHeartbeats(2, timeout: .seconds(30))
        let last = try #require(sourceBeats.last)
        let first = try #require(destinationBeats.first)
        #expect(sourceBeats.allSatisfy { $0.errors == 0 }, "source: \(source.serialTail())")
        #expect(destinationBeats.allSatisfy { $0.errors == 0 }, "destination: \(destination.serialTail())")
        #expect(!destination.serialText().contains("rdmig-guest: error"), "\(destination.serialTail())")
        // A heartbeat line cut by the switchover is finished on the destination and not parsed.
        #expect(last.n < first.n && first.n <= last.n + 2, "source ended at \(last), destination began at \(first)")
        #expect(destinationBeats.last!.written > last.written, "the destination guest writes pages")
    }

    @Test(.timeLimit(.minutes(2)))
    func aGuestMigratesThroughTheLoopbackRelayAndRunsOnAtTheDestination() async throws {
        let pair = try await startPair("plain")
        defer { pair.stop() }
        let observer = try await QMPClient.connect(to: pair.source.testQMP)
        defer { observer.close() }

        // While rdmig's client holds a socket, a second client is told it is busy.
        let busy = await #expect(throws: QMPError.self) {
            try await QMPClient.connect(to: pair.source.rdmigQMP, greetingTimeout: .milliseconds(500))
        }
        #expect(busy == .busy(path: pair.source.rdmigQMP, waited: .milliseconds(500)))
        // A running guest is no migration destination.
        let notIncoming = await #expect(throws: QEMUMigrationError.self) {
            try await QEMUMigrationDestination(qmp: pair.sourceQMP, relay: LoopbackStreamRelay()).receive()
        }
        #expect(notIncoming?.description.contains("start it with -incoming defer -S") == true)

        let relay = try LoopbackStreamRelay()
        let destination = QEMUMigrationDestination(qmp: pair.destinationQMP, configuration: Self.destinationConfiguration, relay: relay)
        let source = QEMUMigrationSource(
            qmp: pair.sourceQMP, configuration: Self.sourceConfiguration, relay: relay)
        let before = try await observer.queryMigrationParameters()
        async let received = destination.receive()
        let sent = try await source.migrate()
        let arrived = try await received

        #expect(sent.info.status == .completed)
        #expect(sent.statuses.first == .setup && sent.statuses.contains(.active) && sent.statuses.last == .completed)
        #expect(!sent.statuses.contains(.preSwitchover), "no hook, no pause")
        #expect(sent.stopTimestamp != nil && sent.passes >= 1)
        #expect(sent.relay.bytes > 64 << 20, "the working set crossed the relay: \(sent.relay)")
        #expect(arrived.relay?.bytes == sent.relay.bytes)
        #expect(sent.info.ram?.transferredBytes ?? 0 > 0)
        #expect(arrived.info.status == .completed)
        #expect(arrived.runStatus.running && !arrived.resumedByQEMU)
        // The run set max-bandwidth and downtime-limit for itself and put them back after.
        let parameters = try await observer.queryMigrationParameters()
        #expect(parameters["max-bandwidth"] == before["max-bandwidth"] && parameters["downtime-limit"] == before["downtime-limit"])
        #expect(try await observer.queryMigrationCapabilities()["pause-before-switchover"] == false)
        #expect(try await observer.queryStatus().status == "postmigrate")
        let downtime = try #require(QEMUMigrationDowntime(source: sent, destination: arrived))
        #expect(downtime.duration > .zero && downtime.duration < .seconds(10))
        print("rdmig QEMU test plain: \(sent.summary)")
        print("rdmig QEMU test plain: \(arrived.summary)")
        print("rdmig QEMU test plain: \(downtime)")
        try await expectGuestContinues(on: pair.destination, after: pair.source)
        // The source stays stopped: no heartbeat after the switchover.
        let sourceBeats = pair.source.heartbeats().count
        try await Task.sleep(for: .milliseconds(700))
        #expect(pair.source.heartbeats().count == sourceBeats)
    }

    /// What the VF state hooks saw, from the test's own QMP connections.
    final class HookLog: Sendable {
        let state = Mutex<[String]>([])
        let payload = Mutex<[UInt8]?>(nil)
        func note(_ line: String) { state.withLock { $0.append(line) } }
        var lines: [String] { state.withLock { $0 } }
    }

    @Test(.timeLimit(.minutes(2)))
    func thePreSwitchoverHookRunsWhileTheSourceIsPausedAndItsStateReachesTheDestinationBeforeCont() async throws {
        let pair = try await startPair("hook")
        defer { pair.stop() }
        let sourceObserver = try await QMPClient.connect(to: pair.source.testQMP)
        let destinationObserver = try await QMPClient.connect(to: pair.destination.testQMP)
        defer {
            sourceObserver.close()
            destinationObserver.close()
        }
        let log = HookLog()
        let vfState = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let relay = try LoopbackStreamRelay()
        let source = QEMUMigrationSource(
            qmp: pair.sourceQMP, configuration: Self.sourceConfiguration, relay: relay,
            preSwitchover: {
                let migration = try await sourceObserver.queryMigrate()
                let status = try await sourceObserver.queryStatus()
                log.note("source \(migration.status?.rawValue ?? "none") running=\(status.running)")
                log.payload.withLock { $0 = vfState }
            })
        let destination = QEMUMigrationDestination(
            qmp: pair.destinationQMP, configuration: Self.destinationConfiguration, relay: relay,
            beforeResume: {
                let migration = try await destinationObserver.queryMigrate()
                let status = try await destinationObserver.queryStatus()
                let arrived = log.payload.withLock { $0 }
                log.note("destination \(migration.status?.rawValue ?? "none") running=\(status.running) state=\(arrived == vfState)")
            })
        async let received = destination.receive()
        let sent = try await source.migrate()
        let arrived = try await received

        #expect(log.lines == ["source pre-switchover running=false", "destination completed running=false state=true"])
        #expect(sent.statuses.contains(.preSwitchover) && sent.statuses.last == .completed)
        #expect(sent.preSwitchoverHookDuration != nil && arrived.beforeResumeHookDuration != nil)
        #expect(arrived.runStatus.running)
        #expect(try await sourceObserver.queryStatus().status == "postmigrate")
        let downtime = try #require(QEMUMigrationDowntime(source: sent, destination: arrived))
        print("rdmig QEMU test hook: \(sent.summary)")
        print("rdmig QEMU test hook: \(downtime)")
        try await expectGuestContinues(on: pair.destination, after: pair.source)
    }

    @Test(.timeLimit(.minutes(2)))
    func aDestinationRelayDyingMidStreamFailsTheMigrationAndTheSourceGuestKeepsRunning() async throws {
        let pair = try await startPair("dying")
        defer { pair.stop() }
        let observer = try await QMPClient.connect(to: pair.source.testQMP)
        defer { observer.close() }
        let loopback = try LoopbackStreamRelay()
        let destination = QEMUMigrationDestination(qmp: pair.destinationQMP, configuration: Self.destinationConfiguration,
                                                   relay: DyingIncomingRelay(inner: loopback, limit: 16 << 20))
        let source = QEMUMigrationSource(
            qmp: pair.sourceQMP, configuration: Self.sourceConfiguration, relay: loopback)
        let receiving = Task { try await destination.receive() }
        let sourceError = await #expect(throws: QEMUMigrationError.self) { try await source.migrate() }
        let destinationResult = await receiving.result

        print("rdmig QEMU test dying: source: \(sourceError.map { "\($0)" } ?? "no error")")
        guard case .relayFailed? = sourceError?.reason else {
            Issue.record("the source should blame the relay: \(String(describing: sourceError))")
            return
        }
        #expect(sourceError?.guestState?.hasPrefix("running") == true)
        #expect(try await observer.queryStatus().running)
        let cancelled = try await observer.queryMigrate()
        #expect(cancelled.status == .cancelled || cancelled.status == .failed)
        guard case .failure(let failure) = destinationResult, let destinationError = failure as? QEMUMigrationError else {
            Issue.record("the destination must not complete from 16 MiB of the stream")
            return
        }
        print("rdmig QEMU test dying: destination: \(destinationError)")
        #expect(destinationError.guestState?.hasPrefix("never ran") == true)
        #expect(await pair.destination.waitForExit(timeout: .seconds(10)), "the destination QEMU was told to quit")
        // The source guest goes on, without page errors.
        let before = pair.source.heartbeats().count
        let beats = try await pair.source.waitForHeartbeats(before + 2, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "\(pair.source.serialTail())")
    }

    @Test(.timeLimit(.minutes(2)))
    func aFailingPreSwitchoverHookCancelsTheMigrationAndTheSourceGuestRunsAgain() async throws {
        let pair = try await startPair("hookfail")
        defer { pair.stop() }
        let observer = try await QMPClient.connect(to: pair.source.testQMP)
        defer { observer.close() }
        struct VFStateUnavailable: Error, CustomStringConvertible {
            var description: String { "VF state provider failed (test fault)" }
        }
        let relay = try LoopbackStreamRelay()
        let source = QEMUMigrationSource(
            qmp: pair.sourceQMP, configuration: Self.sourceConfiguration, relay: relay,
            preSwitchover: { throw VFStateUnavailable() })
        let destination = QEMUMigrationDestination(qmp: pair.destinationQMP, configuration: Self.destinationConfiguration,
                                                   relay: relay, beforeResume: { Issue.record("the destination must not resume") })
        let receiving = Task { try await destination.receive() }
        let sourceError = await #expect(throws: QEMUMigrationError.self) { try await source.migrate() }
        let destinationResult = await receiving.result
        print("rdmig QEMU test hookfail: source: \(sourceError.map { "\($0)" } ?? "no error")")
        guard case .hookFailed? = sourceError?.reason else {
            Issue.record("the source should blame the hook: \(String(describing: sourceError))")
            return
        }
        #expect(sourceError?.guestState?.hasPrefix("running") == true)
        #expect(try await observer.queryStatus().running)
        guard case .failure(let failure) = destinationResult, let destinationError = failure as? QEMUMigrationError else {
            Issue.record("the destination must not complete a cancelled migration")
            return
        }
        print("rdmig QEMU test hookfail: destination: \(destinationError)")
        #expect(destinationError.guestState?.hasPrefix("never ran") == true)
        let before = pair.source.heartbeats().count
        let beats = try await pair.source.waitForHeartbeats(before + 2, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "\(pair.source.serialTail())")
    }
}

extension QEMUMigrationTests {
    @Test(.timeLimit(.minutes(2)))
    func cancellingTheSourceDriverMidMigrationCancelsItInQEMUAndTheGuestKeepsRunning() async throws {
        let pair = try await startPair("cancel")
        defer { pair.stop() }
        let observer = try await QMPClient.connect(to: pair.source.testQMP)
        defer { observer.close() }
        // 32 MiB/s stretches the ~120 MiB stream to a few seconds, long enough to cancel in.
        var configuration = Self.sourceConfiguration
        configuration.maxBandwidth = ByteRate(bytesPerSecond: 32 << 20)
        let relay = try LoopbackStreamRelay()
        let source = QEMUMigrationSource(qmp: pair.sourceQMP, configuration: configuration, relay: relay)
        let destination = QEMUMigrationDestination(qmp: pair.destinationQMP, configuration: Self.destinationConfiguration,
                                                   relay: relay)
        let receiving = Task { try await destination.receive() }
        let migrating = Task { try await source.migrate() }
        try await Task.sleep(for: .milliseconds(1500))
        let during = try await observer.queryMigrate()
        #expect(during.status == .active, "still migrating at 32 MiB/s after 1.5 s: \(during.summary)")
        #expect(try await observer.queryMigrationParameters()["max-bandwidth"] == .int(32 << 20))
        migrating.cancel()
        let outcome = await migrating.result
        guard case .failure(let failure) = outcome, let error = failure as? QEMUMigrationError,
              case .cancelled = error.reason else {
            Issue.record("expected a cancelled migration, got \(outcome)")
            return
        }
        print("rdmig QEMU test cancel: source: \(error)")
        #expect(error.guestState?.hasPrefix("running") == true)
        #expect(try await observer.queryStatus().running)
        #expect(try await observer.queryMigrate().status == .cancelled)
        guard case .failure(let destinationFailure) = await receiving.result,
              let destinationError = destinationFailure as? QEMUMigrationError else {
            Issue.record("the destination must not complete a cancelled migration")
            return
        }
        print("rdmig QEMU test cancel: destination: \(destinationError)")
        #expect(destinationError.guestState?.hasPrefix("never ran") == true)
        let before = pair.source.heartbeats().count
        let beats = try await pair.source.waitForHeartbeats(before + 2, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "\(pair.source.serialTail())")
    }
}
