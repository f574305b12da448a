#if canImport(Glibc)
import RdmigTestSupport
import Glibc
#endif
import Foundation
import RdmigQEMU
import RdmigSystem
import Testing

/// Real processes end to end: source QEMU → `rdmig source --qemu-qmp` → TCP on loopback →
/// `rdmig dest --qemu-qmp` → destination QEMU. Small guests (256 MiB, 64 MiB working set
/// dirtied at 20 MB/s, a heartbeat every 500 ms) under TCG, one pair at a time.
@Suite("rdmig QEMU mode (real QEMU, real rdmig processes)", .serialized,
       .enabled(if: QEMUTestGuest.qemuAvailable, "qemu-system-x86_64 is not installed (Tests/qemu-guest/install-qemu.sh)"))
struct QEMUModeTests {
    typealias Pair = QEMUTestPair

    func startPair(_ test: String) async throws -> Pair {
        try await QEMUTestPair.start("rqm\(getpid())-\(test)", sockets: .test, label: "rdmig QEMU-mode test \(test)")
    }

    /// Blocking process waits off the concurrency pool.
    func blocking<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await DedicatedThread.run(name: "test-wait", body)
    }

    struct Run {
        let sourceExit: Int32
        let destinationExit: Int32
        let source: [String: Any]
        let destination: [String: Any]
        let sourceStderr: String
        let destinationStderr: String
    }

    func migrate(_ pair: Pair, sourceArguments: [String] = []) async throws -> Run {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--qemu-qmp", pair.destination.rdmigQMP, "--listen", "127.0.0.1:0",
                                            "--key-file", key, "--json", "--peer-timeout", "20s"])
        let port = try await blocking { try destination.listeningPort() }
        let source = try RdmigProcess(["source", "--qemu-qmp", pair.source.rdmigQMP, "--connect", "127.0.0.1:\(port)",
                                       "--key-file", key, "--json", "--peer-timeout", "20s"] + sourceArguments)
        let sourceExit = try await blocking { source.wait(timeout: 120) }
        let destinationExit = try await blocking { destination.wait(timeout: 30) }
        return Run(sourceExit: sourceExit, destinationExit: destinationExit, source: try source.report(),
                   destination: try destination.report(), sourceStderr: source.stderr, destinationStderr: destination.stderr)
    }

    /// The destination guest runs on from where the source stopped, without a lost write.
    func expectGuestRunsOnDestination(_ pair: Pair) async throws {
        let lastOnSource = pair.source.heartbeats().last
        let beats = try await pair.destination.waitForHeartbeats(3, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "destination heartbeats: \(beats); serial:\n\(pair.destination.serialTail())")
        if let lastOnSource, let first = beats.first {
            #expect(first.n > lastOnSource.n, "the destination's heartbeats continue the source's (\(lastOnSource) then \(first))")
        }
        let destinationStatus = try await pair.destinationQMP.queryStatus()
        #expect(destinationStatus.running, "destination QEMU is \(destinationStatus)")
        let sourceStatus = try await pair.sourceQMP.queryStatus()
        #expect(sourceStatus.isPostMigrate, "source QEMU is \(sourceStatus), not postmigrate")
    }

    /// Both services started on a slow stream (20 MiB/s for ~130 MiB), returned a second into
    /// it, so that whatever the test breaks next breaks mid-stream.
    func startSlowMigration(_ pair: Pair) async throws -> (source: RdmigProcess, destination: RdmigProcess) {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--qemu-qmp", pair.destination.rdmigQMP, "--listen", "127.0.0.1:0",
                                            "--key-file", key, "--json", "-v"])
        let port = try await blocking { try destination.listeningPort() }
        let source = try RdmigProcess(["source", "--qemu-qmp", pair.source.rdmigQMP, "--connect", "127.0.0.1:\(port)",
                                       "--key-file", key, "--json", "-v", "--max-bandwidth", "20MiB/s"])
        _ = try await blocking { try destination.waitForLine(containing: "QEMU migration active") }
        try await Task.sleep(for: .seconds(1))
        return (source, destination)
    }

    @Test func qemuGuestMovesThroughRdmigAndRunsOnTheDestination() async throws {
        let pair = try await startPair("plain")
        defer { pair.stop() }
        let run = try await migrate(pair)
        #expect(run.sourceExit == 0, "rdmig source exited \(run.sourceExit):\n\(run.sourceStderr)")
        #expect(run.destinationExit == 0, "rdmig dest exited \(run.destinationExit):\n\(run.destinationStderr)")
        #expect(run.source["status"] as? String == "completed")
        #expect(run.destination["status"] as? String == "completed")
        let qemu = run.source["qemu"] as? [String: Any]
        #expect(qemu?["status"] as? String == "completed")
        // max-bandwidth came from the probe, not QEMU's 128 MiB/s default.
        let probe = run.source["probe"] as? [String: Any]
        let probeRate = (probe?["bytes-per-second"] as? NSNumber)?.uint64Value ?? 0
        #expect(probeRate > 0)
        #expect((run.source["max-bandwidth-bytes-per-second"] as? NSNumber)?.uint64Value == probeRate)
        // Both relays carried exactly what QEMU sent.
        let relayBytes = ((run.source["relay"] as? [String: Any])?["bytes"] as? NSNumber)?.uint64Value
        let peerBytes = ((run.destination["relay"] as? [String: Any])?["bytes"] as? NSNumber)?.uint64Value
        #expect(relayBytes != nil && relayBytes == peerBytes)
        let downtime = (run.source["downtime-milliseconds"] as? NSNumber)?.doubleValue
        #expect(downtime.map { $0 > 0 && $0 < 10_000 } == true, "STOP-to-RESUME downtime \(String(describing: downtime))")
        print("rdmig QEMU-mode test plain: total-time \(qemu?["total-time-milliseconds"] ?? "?") ms, QEMU downtime "
            + "\(qemu?["downtime-milliseconds"] ?? "?") ms, STOP-to-RESUME \(downtime.map { formatFixed($0, decimals: 1) } ?? "?") ms")
        try await expectGuestRunsOnDestination(pair)
    }

    @Test func vfStateMovesAtPreSwitchoverAndIsVerifiedOnTheDestination() async throws {
        let pair = try await startPair("vf")
        defer { pair.stop() }
        let run = try await migrate(pair, sourceArguments: ["--vf", "ib-sw:qps=100"])
        #expect(run.sourceExit == 0, "rdmig source exited \(run.sourceExit):\n\(run.sourceStderr)")
        #expect(run.destinationExit == 0, "rdmig dest exited \(run.destinationExit):\n\(run.destinationStderr)")
        #expect(run.source["status"] as? String == "completed")
        // The pre-switchover hook ran, and the destination loaded the state and checked its digest.
        #expect(run.source["pre-switchover-hook-milliseconds"] != nil)
        #expect(run.destination["vf-state-verified"] as? Bool == true)
        let sent = (run.source["vf-state-bytes"] as? NSNumber)?.uint64Value ?? 0
        let loaded = (run.destination["vf-state-bytes"] as? NSNumber)?.uint64Value ?? 0
        #expect(sent > 0 && sent == loaded, "VF state sent \(sent) B, loaded \(loaded) B")
        try await expectGuestRunsOnDestination(pair)
    }

    @Test func killingTheRdmigDestinationMidStreamLeavesTheSourceGuestRunning() async throws {
        let pair = try await startPair("kill")
        defer { pair.stop() }
        let (source, destination) = try await startSlowMigration(pair)
        destination.kill()
        let sourceExit = try await blocking { source.wait(timeout: 60) }
        #expect(sourceExit == 1, "rdmig source exited \(sourceExit):\n\(source.stderr)")
        let report = try source.report()
        #expect(report["status"] as? String == "failed")
        let error = report["error"] as? String ?? ""
        #expect(error.contains("destination"), "error: \(error)")
        let status = try await pair.sourceQMP.queryStatus()
        #expect(status.running, "source QEMU is \(status) after the failed migration")
        let info = try await pair.sourceQMP.queryMigrate()
        #expect(info.status == .cancelled || info.status == .failed, "source migration status \(String(describing: info.status))")
        // The guest keeps running on the source, without a lost write.
        let before = pair.source.heartbeats().count
        let beats = try await pair.source.waitForHeartbeats(before + 3, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "source heartbeats: \(beats.suffix(5))")
        // The destination QEMU never ran the guest.
        let destinationStatus = try await pair.destinationQMP.queryStatus()
        #expect(!destinationStatus.running, "destination QEMU is \(destinationStatus)")
    }

    /// SIGTERM to the source service mid-stream, with a VF (so pause-before-switchover is on):
    /// QEMU's migration is cancelled, the guest runs on at the source, and the migration
    /// settings rdmig changed are what they were before.
    @Test func aSignalToTheSourceServiceCancelsQEMUsMigrationAndRestoresItsSettings() async throws {
        let pair = try await startPair("signal")
        defer { pair.stop() }
        let parametersBefore = try await pair.sourceQMP.queryMigrationParameters()
        let capabilitiesBefore = try await pair.sourceQMP.queryMigrationCapabilities()
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--qemu-qmp", pair.destination.rdmigQMP, "--listen", "127.0.0.1:0",
                                            "--key-file", key, "--json", "-v"])
        let port = try await blocking { try destination.listeningPort() }
        let source = try RdmigProcess(["source", "--qemu-qmp", pair.source.rdmigQMP, "--connect", "127.0.0.1:\(port)",
                                       "--key-file", key, "--json", "-v", "--max-bandwidth", "20MiB/s", "--vf", "ib-sw:qps=100"])
        _ = try await blocking { try destination.waitForLine(containing: "QEMU migration active") }
        try await Task.sleep(for: .seconds(1))
        kill(source.process.processIdentifier, SIGTERM)
        let sourceExit = try await blocking { source.wait(timeout: 60) }
        #expect(sourceExit == 128 + SIGTERM, "rdmig source exited \(sourceExit):\n\(source.stderr)")
        #expect(try source.report()["status"] as? String == "failed")
        let destinationExit = try await blocking { destination.wait(timeout: 60) }
        #expect(destinationExit == 1, "rdmig dest exited \(destinationExit):\n\(destination.stderr)")
        let status = try await pair.sourceQMP.queryStatus()
        #expect(status.running, "source QEMU is \(status) after the cancelled migration")
        let info = try await pair.sourceQMP.queryMigrate()
        #expect(info.status == .cancelled, "source migration status \(String(describing: info.status))")
        let parametersAfter = try await pair.sourceQMP.queryMigrationParameters()
        #expect(parametersAfter["max-bandwidth"] == parametersBefore["max-bandwidth"], "max-bandwidth left at \(String(describing: parametersAfter["max-bandwidth"]))")
        #expect(parametersAfter["downtime-limit"] == parametersBefore["downtime-limit"])
        let capabilitiesAfter = try await pair.sourceQMP.queryMigrationCapabilities()
        #expect(capabilitiesAfter["pause-before-switchover"] == capabilitiesBefore["pause-before-switchover"])
        let before = pair.source.heartbeats().count
        let beats = try await pair.source.waitForHeartbeats(before + 3, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "source heartbeats: \(beats.suffix(5))")
        // The destination service quit its QEMU (or left it paused): it never ran the guest.
        if let destinationStatus = try? await pair.destinationQMP.queryStatus() {
            #expect(!destinationStatus.running, "destination QEMU is \(destinationStatus)")
        }
    }

    @Test func theDestinationQEMUDyingMidStreamFailsBothServicesAndTheSourceGuestRunsOn() async throws {
        let pair = try await startPair("qemu-dies")
        defer { pair.stop() }
        let (source, destination) = try await startSlowMigration(pair)
        // The QEMU reading the relay's pipe vanishes: the relay's next vmsplice meets no reader.
        Glibc.kill(pair.destination.pid, SIGKILL)
        let destinationExit = try await blocking { destination.wait(timeout: 60) }
        let sourceExit = try await blocking { source.wait(timeout: 60) }
        #expect(destinationExit == 1, "rdmig dest exited \(destinationExit):\n\(destination.stderr)")
        #expect(sourceExit == 1, "rdmig source exited \(sourceExit):\n\(source.stderr)")
        let destinationError = try destination.report()["error"] as? String ?? ""
        #expect(destinationError.contains("QEMU"), "destination error: \(destinationError)")
        print("rdmig QEMU-mode test qemu-dies: the destination said: \(destinationError)")
        #expect(try source.report()["status"] as? String == "failed")
        let status = try await pair.sourceQMP.queryStatus()
        #expect(status.running, "source QEMU is \(status) after the failed migration")
        let before = pair.source.heartbeats().count
        let beats = try await pair.source.waitForHeartbeats(before + 3, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "source heartbeats: \(beats.suffix(5))")
    }

    @Test func aNativeDestinationRefusesAQEMUModeSourceAndTheGuestIsUntouched() async throws {
        let pair = try await startPair("mismatch")
        defer { pair.stop() }
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--key-file", key, "--json"])
        let port = try await blocking { try destination.listeningPort() }
        let source = try RdmigProcess(["source", "--qemu-qmp", pair.source.rdmigQMP, "--connect", "127.0.0.1:\(port)",
                                       "--key-file", key, "--json"])
        let sourceExit = try await blocking { source.wait(timeout: 60) }
        #expect(sourceExit == 1)
        let error = try source.report()["error"] as? String ?? ""
        #expect(error.contains("native mode"), "error: \(error)")
        // The native destination logs the refusal and goes on waiting for a native source.
        let refusal = try await blocking { try destination.waitForLine(containing: "QEMU mode", timeout: 10) }
        #expect(refusal.contains("the source runs in QEMU mode"), "native destination's log: \(refusal)")
        #expect(destination.process.isRunning)
        destination.kill()
        _ = try await blocking { destination.wait(timeout: 10) }
        let status = try await pair.sourceQMP.queryStatus()
        #expect(status.running, "source QEMU is \(status)")
        // Refused before QEMU was asked to migrate.
        let info = try await pair.sourceQMP.queryMigrate()
        #expect(info.status == nil || info.status == QEMUMigrationStatus.none, "source migration status \(String(describing: info.status))")
    }
}
