#if canImport(Glibc)
import RdmigTestSupport
import Glibc
#endif
import Foundation
import RdmigQEMU
import RdmigSystem
import Testing

/// SIGKILL of `rdmig source --qemu-qmp`, which runs none of its own clean-up: its watchdog
/// process (`rdmig qemu-watchdog`) puts the source QEMU back before the hand-over and keeps
/// its hands off after it. Real QEMU pairs as in QEMUModeTests; every test migrates with an
/// ib-sw VF so that rdmig turns pause-before-switchover on and QEMU stops at pre-switchover.
/// The test checks QEMU through its own QMP socket; rdmig and its watchdog use the second one.
@Suite("rdmig QEMU mode: SIGKILL of the source service and its watchdog (real QEMU)", .serialized,
       .enabled(if: QEMUTestGuest.qemuAvailable, "qemu-system-x86_64 is not installed (Tests/qemu-guest/install-qemu.sh)"))
struct QEMUWatchdogTests {
    /// What rdmig changes, as the test read it before the migration.
    struct Settings: Equatable, CustomStringConvertible {
        var maxBandwidth: QMPValue?
        var downtimeLimit: QMPValue?
        var pauseBeforeSwitchover: Bool?
        var events: Bool?

        static func read(_ qmp: QMPClient) async throws -> Settings {
            let parameters = try await qmp.queryMigrationParameters()
            let capabilities = try await qmp.queryMigrationCapabilities()
            return Settings(maxBandwidth: parameters["max-bandwidth"], downtimeLimit: parameters["downtime-limit"],
                            pauseBeforeSwitchover: capabilities["pause-before-switchover"], events: capabilities["events"])
        }

        var description: String {
            "max-bandwidth \(maxBandwidth.map { "\($0)" } ?? "?"), downtime-limit \(downtimeLimit.map { "\($0)" } ?? "?"), "
                + "pause-before-switchover \(pauseBeforeSwitchover.map { "\($0)" } ?? "?"), events \(events.map { "\($0)" } ?? "?")"
        }
    }

    struct Migration {
        let pair: QEMUTestPair
        let source: RdmigProcess
        let destination: RdmigProcess
        let settingsBefore: Settings
    }

    func blocking<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await DedicatedThread.run(name: "test-wait", body)
    }

    /// A migration with a VF; `faults` go to the source service. `slow` caps QEMU at 20 MiB/s,
    /// which the guest's 20 MB/s of writes keep from converging: it stays in pre-copy.
    func start(_ test: String, slow: Bool = false, faults: [String] = [], sourceArguments: [String] = []) async throws -> Migration {
        let pair = try await QEMUTestPair.start("rqw\(getpid())-\(test)", sockets: .test, label: "rdmig QEMU watchdog test \(test)")
        do {
            let settings = try await Settings.read(pair.sourceQMP)
            let key = try temporaryKeyFile()
            let destination = try RdmigProcess(["dest", "--qemu-qmp", pair.destination.rdmigQMP, "--listen", "127.0.0.1:0",
                                                "--key-file", key, "--json", "-v"])
            let port = try await blocking { try destination.listeningPort() }
            let source = try RdmigProcess(["source", "--qemu-qmp", pair.source.rdmigQMP, "--connect", "127.0.0.1:\(port)",
                                           "--key-file", key, "--json", "-v", "--vf", "ib-sw:qps=100"] + (slow ? ["--max-bandwidth", "20MiB/s"] : []) + sourceArguments,
                                          environment: faults.isEmpty ? [:] : ["RDMIG_FAULT": faults.joined(separator: ",")])
            return Migration(pair: pair, source: source, destination: destination, settingsBefore: settings)
        } catch {
            pair.stop()
            throw error
        }
    }

    /// Polls the source QEMU until the guest runs, no migration is under way and the settings
    /// are the ones from before; returns how long that took, or nil at `timeout`.
    func waitForRecovery(_ migration: Migration, timeout: Duration = .seconds(30)) async throws -> Duration? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            let status = try await migration.pair.sourceQMP.queryStatus()
            let info = try await migration.pair.sourceQMP.queryMigrate()
            let settings = try await Settings.read(migration.pair.sourceQMP)
            if status.running, !(info.status?.isInProgress ?? false), settings == migration.settingsBefore {
                return ContinuousClock.now - start
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    /// What the test expects of the source QEMU after recovery, and that the guest goes on
    /// without a lost write.
    func expectRecovered(_ migration: Migration, within elapsed: Duration?, label: String) async throws {
        let qmp = migration.pair.sourceQMP
        let status = try await qmp.queryStatus()
        let info = try await qmp.queryMigrate()
        let settings = try await Settings.read(qmp)
        #expect(elapsed != nil, "\(label): not recovered within 30 s: QEMU \(status), migration \(info.status?.rawValue ?? "none"), \(settings)")
        #expect(status.running, "\(label): source QEMU is \(status)")
        // Cancelled by the watchdog, or failed by QEMU itself once its socket's other end closed.
        #expect(info.status == .cancelled || info.status == .failed, "\(label): source migration is \(info.status?.rawValue ?? "none")")
        #expect(settings == migration.settingsBefore, "\(label): settings \(settings), before \(migration.settingsBefore)")
        let line = try await blocking { try migration.source.waitForLine(containing: "recovered:", timeout: 30) }
        print("rdmig QEMU watchdog test \(label): SIGKILL to guest running again with settings back: "
            + "\(elapsed.map { formatFixed($0.milliseconds, decimals: 0) } ?? "?") ms; the watchdog said: \(line)")
        let before = migration.pair.source.heartbeats().count
        let beats = try await migration.pair.source.waitForHeartbeats(before + 3, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "source heartbeats: \(beats.suffix(5))")
        if let destinationStatus = try? await migration.pair.destinationQMP.queryStatus() {
            #expect(!destinationStatus.running, "destination QEMU is \(destinationStatus)")
        }
    }

    func waitForPreSwitchover(_ migration: Migration) async throws {
        _ = try await blocking { try migration.source.waitForLine(containing: "stalling at source-stall-at-pre-switchover", timeout: 90) }
        let info = try await migration.pair.sourceQMP.queryMigrate()
        let status = try await migration.pair.sourceQMP.queryStatus()
        #expect(info.status == .preSwitchover && !status.running, "QEMU waits at pre-switchover: migration \(info.status?.rawValue ?? "none"), guest \(status)")
    }

    @Test func aSIGKILLInPreCopyLeavesQEMURunningWithItsSettingsBack() async throws {
        let migration = try await start("precopy", slow: true)
        defer { migration.pair.stop() }
        _ = try await blocking { try migration.destination.waitForLine(containing: "QEMU migration active") }
        try await Task.sleep(for: .seconds(1))
        let during = try await Settings.read(migration.pair.sourceQMP)
        #expect(during != migration.settingsBefore, "rdmig changed QEMU's settings for the migration (\(during))")
        migration.source.kill()
        let elapsed = try await waitForRecovery(migration)
        try await expectRecovered(migration, within: elapsed, label: "pre-copy")
    }

    @Test func aSIGKILLWhileQEMUWaitsAtPreSwitchoverCancelsResumesAndRestores() async throws {
        let migration = try await start("preswitchover", faults: ["source-stall-at-pre-switchover"])
        defer { migration.pair.stop() }
        try await waitForPreSwitchover(migration)
        migration.source.kill()
        let elapsed = try await waitForRecovery(migration)
        try await expectRecovered(migration, within: elapsed, label: "pre-switchover")
    }

    /// No kill from the test: the service hangs at pre-switchover (the fault stalls its hook
    /// for a minute), and the watchdog ends the wait at switchover budget (1 s) + 2 s.
    @Test func aServiceStuckAtPreSwitchoverIsKilledByItsWatchdogAtTheLimit() async throws {
        let migration = try await start("stuck", faults: ["source-stall-at-pre-switchover"])
        defer { migration.pair.stop() }
        try await waitForPreSwitchover(migration)
        let stalled = ContinuousClock.now
        let exit = try await blocking { migration.source.wait(timeout: 30) }
        let killedAfter = ContinuousClock.now - stalled
        #expect(migration.source.process.terminationReason == .uncaughtSignal && exit == SIGKILL,
                "the source service ended with \(exit) (\(migration.source.process.terminationReason.rawValue))")
        #expect(killedAfter < .seconds(6), "killed \(killedAfter) after QEMU reached pre-switchover")
        let elapsed = try await waitForRecovery(migration)
        let paused = ContinuousClock.now - stalled
        try await expectRecovered(migration, within: elapsed, label: "stuck at pre-switchover")
        print("rdmig QEMU watchdog test stuck: the service was killed \(formatFixed(killedAfter.milliseconds, decimals: 0)) ms "
            + "after QEMU reached pre-switchover; the guest ran again \(formatFixed(paused.milliseconds, decimals: 0)) ms after")
        #expect(migration.source.stderr.contains("killing it (SIGKILL)"))
    }

    /// A service that is late but not stuck (its hook goes on after 3 s, past a 2.5 s budget)
    /// aborts by itself, with a report, before the watchdog's limit (budget + 2 s) passes.
    @Test func aServiceOverItsSwitchoverBudgetAbortsByItselfBeforeTheWatchdogsLimit() async throws {
        let migration = try await start("budget", faults: ["source-stall-at-pre-switchover=3"],
                                        sourceArguments: ["--set", "switchover-budget=2500ms"])
        defer { migration.pair.stop() }
        try await waitForPreSwitchover(migration)
        let stalled = ContinuousClock.now
        let exit = try await blocking { migration.source.wait(timeout: 30) }
        #expect(exit == 1, "the source service exited \(exit):\n\(migration.source.stderr)")
        let report = try migration.source.report()
        let error = report["error"] as? String ?? ""
        #expect(error.contains("switchover budget of 2500 ms"), "error: \(error)")
        let elapsed = try await waitForRecovery(migration)
        let paused = ContinuousClock.now - stalled
        #expect(elapsed != nil, "the service's own abort resumed the guest and restored the settings")
        #expect(!migration.source.stderr.contains("killing it (SIGKILL)"), "the watchdog killed a service that kept its limit")
        #expect(!migration.source.stderr.contains("recovered:"), "the watchdog acted although the service released it")
        print("rdmig QEMU watchdog test budget: the guest ran again \(formatFixed(paused.milliseconds, decimals: 0)) ms after QEMU "
            + "reached pre-switchover (budget 2500 ms, the hook stalled 3 s); the service said: \(error)")
    }

    /// After the hand-over the guest belongs to the destination: a SIGKILL then must leave the
    /// source QEMU stopped (resuming it would make two running copies).
    @Test func aSIGKILLAfterQEMUCompletedLeavesTheSourcePausedAndTheGuestRunsOnTheDestination() async throws {
        let migration = try await start("committed", faults: ["source-stall-after-qemu-completed"])
        defer { migration.pair.stop() }
        _ = try await blocking { try migration.source.waitForLine(containing: "stalling at source-stall-after-qemu-completed", timeout: 120) }
        // The source's QEMU completed once the relay delivered the stream; the destination's
        // may still be loading it (slow under load), and a destination that loses its source
        // before its QEMU completed gives the guest up. Strike once the guest runs there.
        let deadline = ContinuousClock.now + .seconds(60)
        while try await !migration.pair.destinationQMP.queryStatus().running, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        migration.source.kill()
        let line = try await blocking { try migration.source.waitForLine(containing: "recovered:", timeout: 30) }
        #expect(line.contains("hands off"), "the watchdog said: \(line)")
        // Give a wrong `cont` time to show.
        try await Task.sleep(for: .seconds(2))
        let status = try await migration.pair.sourceQMP.queryStatus()
        #expect(status.isPostMigrate && !status.running, "source QEMU is \(status), not postmigrate")
        let info = try await migration.pair.sourceQMP.queryMigrate()
        #expect(info.status == .completed, "source migration is \(info.status?.rawValue ?? "none")")
        // The settings were restored (by the service before it stalled, or by the watchdog).
        #expect(try await Settings.read(migration.pair.sourceQMP) == migration.settingsBefore)
        let beats = try await migration.pair.destination.waitForHeartbeats(3, timeout: .seconds(30))
        #expect(beats.allSatisfy { $0.errors == 0 }, "destination heartbeats: \(beats)")
        let destinationStatus = try await migration.pair.destinationQMP.queryStatus()
        #expect(destinationStatus.running, "destination QEMU is \(destinationStatus)")
        print("rdmig QEMU watchdog test committed: source \(status), destination \(destinationStatus); the watchdog said: \(line)")
    }

    /// The residue without the watchdog (`RDMIG_FAULT=no-qemu-watchdog`), measured the same
    /// way: what the README's SIGKILL paragraph compares against. The test then cleans up.
    @Test(arguments: ["pre-copy", "pre-switchover"])
    func withoutTheWatchdogASIGKILLLeavesQEMUsSettingsChanged(phase: String) async throws {
        let atPreSwitchover = phase == "pre-switchover"
        let migration = try await start("nowd-\(phase)", slow: !atPreSwitchover, faults: ["no-qemu-watchdog"] + (atPreSwitchover ? ["source-stall-at-pre-switchover"] : []))
        defer { migration.pair.stop() }
        if atPreSwitchover {
            try await waitForPreSwitchover(migration)
        } else {
            _ = try await blocking { try migration.destination.waitForLine(containing: "QEMU migration active") }
            try await Task.sleep(for: .seconds(1))
        }
        migration.source.kill()
        try await Task.sleep(for: .seconds(5))
        let qmp = migration.pair.sourceQMP
        let status = try await qmp.queryStatus()
        let info = try await qmp.queryMigrate()
        let settings = try await Settings.read(qmp)
        print("rdmig QEMU watchdog test without watchdog, SIGKILL in \(phase): 5 s later QEMU \(status), migration "
            + "\(info.status?.rawValue ?? "none"), \(settings) (before: \(migration.settingsBefore))")
        #expect(settings != migration.settingsBefore, "without the watchdog the settings stay changed")
        if atPreSwitchover {
            #expect(info.status == .preSwitchover && !status.running, "without the watchdog QEMU stays at pre-switchover, paused")
            try await qmp.migrateCancel()
        }
    }
}
