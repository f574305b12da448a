import Logging
import RdmigQEMU
import Synchronization
import Testing

/// QEMUSourceRecovery's commands against a fake QEMU: what the watchdog sends for each state
/// it finds, above all that it never cancels or resumes once the hand-over may have happened.
@Suite("QEMU source recovery against a fake QMP server")
struct QEMUSourceRecoveryTests {
    static let plan = QEMUSourceRecovery.Plan(
        qmpPath: "", settings: QEMUMigrationSettings(capabilities: ["pause-before-switchover": false], parameters: ["max-bandwidth": 134217728]),
        guestWasRunning: true, fdName: "rdmig-migration")

    /// A QEMU whose migration status moves along `statuses` (one per query-migrate, the last
    /// repeating; `migrate_cancel` moves a status under way to `cancelled`) and whose guest runs
    /// when `running` (`cont` starts it). Returns the commands the recovery sent, in order.
    func recover(statuses: [String], running: Bool, continuing: Bool) async throws -> (commands: [String], outcome: QEMUSourceRecovery.Outcome) {
        let server = try FakeQMPServer()
        let commands = Mutex<[String]>([])
        let script = server.serve { peer in
            try peer.negotiate()
            var statuses = statuses
            var running = running
            while let request = try? peer.receive() {
                commands.withLock { $0.append(request.command) }
                switch request.command {
                case "query-migrate":
                    let status = statuses.count > 1 ? statuses.removeFirst() : statuses[0]
                    try peer.reply(to: request, status == "none" ? .object([:]) : ["status": .string(status)])
                case "migrate_cancel":
                    statuses = ["cancelled"]
                    try peer.reply(to: request, .object([:]))
                case "query-status":
                    try peer.reply(to: request, ["status": .string(running ? "running" : "finish-migrate"), "running": .bool(running)])
                case "cont":
                    running = true
                    try peer.reply(to: request, .object([:]))
                default:
                    try peer.reply(to: request, .object([:]))
                }
            }
        }
        let qmp = try await QMPClient.connect(to: server.path)
        let outcome = await QEMUSourceRecovery.recover(plan: Self.plan, continuing: continuing, qmp: qmp, logger: Logger(label: "test"))
        qmp.close()
        _ = try? await script.value
        return (commands.withLock { $0 }, outcome)
    }

    @Test func atPreSwitchoverItCancelsResumesAndRestores() async throws {
        let (commands, outcome) = try await recover(statuses: ["pre-switchover"], running: false, continuing: false)
        #expect(commands.contains("migrate_cancel"))
        #expect(commands.contains("cont"), "\(commands)")
        #expect(commands.contains("migrate-set-capabilities") && commands.contains("migrate-set-parameters"))
        // The settings only after QEMU said the migration is over.
        #expect(commands.firstIndex(of: "migrate-set-capabilities")! > commands.firstIndex(of: "migrate_cancel")!)
        #expect(outcome.settingsRestored && outcome.runStatusAfter?.running == true)
    }

    @Test func afterACompletedMigrationItNeverCancelsNorResumes() async throws {
        for continuing in [false, true] {
            let (commands, outcome) = try await recover(statuses: ["completed"], running: false, continuing: continuing)
            #expect(!commands.contains("migrate_cancel") && !commands.contains("cont"), "\(commands)")
            #expect(outcome.decision == .handsOff && outcome.settingsRestored)
        }
    }

    @Test func afterMigrateContinueItWaitsForQEMUsEndThenRestoresOnlyTheSettings() async throws {
        let (commands, outcome) = try await recover(statuses: ["device", "device", "failed"], running: false, continuing: true)
        #expect(!commands.contains("migrate_cancel") && !commands.contains("cont"), "\(commands)")
        #expect(commands.filter { $0 == "query-migrate" }.count >= 3, "\(commands)")
        #expect(outcome.settingsRestored && outcome.runStatusAfter?.running == false)
    }

    @Test func aCancelThatCameTooLateLeavesTheCompletedMigrationAlone() async throws {
        // QEMU reports active, then completed whatever the cancel asked.
        let server = try FakeQMPServer()
        let commands = Mutex<[String]>([])
        let script = server.serve { peer in
            try peer.negotiate()
            var queried = 0
            while let request = try? peer.receive() {
                commands.withLock { $0.append(request.command) }
                if request.command == "query-migrate" {
                    queried += 1
                    try peer.reply(to: request, ["status": .string(queried == 1 ? "active" : "completed")])
                } else if request.command == "query-status" {
                    try peer.reply(to: request, ["status": "postmigrate", "running": false])
                } else {
                    try peer.reply(to: request, .object([:]))
                }
            }
        }
        let qmp = try await QMPClient.connect(to: server.path)
        let outcome = await QEMUSourceRecovery.recover(plan: Self.plan, continuing: false, qmp: qmp, logger: Logger(label: "test"))
        qmp.close()
        _ = try? await script.value
        let sent = commands.withLock { $0 }
        #expect(sent.contains("migrate_cancel") && !sent.contains("cont"), "\(sent)")
        #expect(outcome.decision == .handsOff, "\(outcome)")
    }

    @Test func withNoMigrationStartedItRestoresTheSettingsAndDropsAHeldSocket() async throws {
        let (commands, outcome) = try await recover(statuses: ["none"], running: true, continuing: false)
        #expect(!commands.contains("migrate_cancel") && !commands.contains("cont"), "\(commands)")
        #expect(commands.contains("closefd") && outcome.settingsRestored, "\(commands)")
    }
}
