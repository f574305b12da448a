import Logging
import RdmigSystem

/// The source side of rdmig's QEMU mode: QEMU writes its migration stream (RAM, CPU and
/// device state) into one end of a socket pair passed with `getfd`, and the relay carries the
/// other end's bytes to the destination.
///
/// Sequence: check QEMU can migrate; capabilities (`events` on; `pause-before-switchover`
/// exactly when a pre-switchover hook is given) and parameters (`downtime-limit`,
/// `max-bandwidth`); socket pair, `getfd`, `migrate uri=fd:NAME`; then follow MIGRATION events
/// while the relay runs. At `pre-switchover` (the guest is already stopped) the hook moves the
/// VF state out of band, then `migrate-continue`. Done when QEMU says `completed` and the
/// relay has delivered the whole stream.
///
/// On any failure before completion (relay, hook, QEMU, timeout): `migrate_cancel`, shut the
/// channel, wait for QEMU's verdict, and make sure a guest that was running runs again (QEMU
/// restarts it itself after a cancel, migration/migration.c migration_iteration_finish; `cont`
/// is the fallback). The error says what happened and where the guest is. A `watch` hears of
/// each step a guard outliving this process needs (QEMUSourceWatch): the settings to
/// restore before the first change, pre-switchover, and `migrate-continue`.
public struct QEMUMigrationSource: Sendable {
    public let qmp: QMPClient
    public let configuration: QEMUSourceConfiguration
    public let relay: any QEMUOutgoingStreamRelay
    public let preSwitchover: QEMUMigrationHook?
    /// Told each step that matters to a guard outliving this process (see QEMUSourceWatch).
    public let watch: (any QEMUSourceWatch)?
    public let logger: Logger

    public init(qmp: QMPClient, configuration: QEMUSourceConfiguration, relay: any QEMUOutgoingStreamRelay,
                preSwitchover: QEMUMigrationHook? = nil, watch: (any QEMUSourceWatch)? = nil,
                logger: Logger = Logger(label: "rdmig.qemu.source")) {
        self.qmp = qmp
        self.configuration = configuration
        self.relay = relay
        self.preSwitchover = preSwitchover
        self.watch = watch
        self.logger = logger
    }

    public func migrate() async throws(QEMUMigrationError) -> QEMUSourceReport {
        if let problem = configuration.problem { throw failure(.notReady(problem)) }
        let status = try await step("query-status") { () async throws(QMPError) in try await qmp.queryStatus() }
        guard status.running || status.status == "paused" else {
            throw failure(.notReady("the source QEMU is \(status), not running or paused: there is no guest to migrate"))
        }
        let previous = try await step("query-migrate") { () async throws(QMPError) in try await qmp.queryMigrate() }
        if let active = previous.status, active.isInProgress {
            throw failure(.notReady("a migration is already \(active) on the source QEMU: let it finish or cancel it (migrate_cancel)"))
        }
        // What this run changes, as it was: put back on every way out (a lowered max-bandwidth
        // or pause-before-switchover left behind would catch whoever migrates this QEMU next).
        let changedCapabilities = ["events", "pause-before-switchover"]
        let changedParameters = ["downtime-limit", "max-bandwidth"]
        let previousCapabilities = try await step("query-migrate-capabilities") { () async throws(QMPError) in
            try await qmp.queryMigrationCapabilities()
        }
        let previousParameters = try await step("query-migrate-parameters") { () async throws(QMPError) in
            try await qmp.queryMigrationParameters()
        }
        let restore = QEMUMigrationSettings(
            capabilities: previousCapabilities.filter { changedCapabilities.contains($0.key) },
            parameters: Dictionary(uniqueKeysWithValues: changedParameters.compactMap { name in previousParameters[name].map { (name, $0) } }))
        // The guard must hold what to restore before the first change: a death right after
        // migrate-set-capabilities would otherwise leave them behind.
        if let watch {
            do {
                try watch.arm(QEMUSourceRecovery.Plan(qmpPath: qmp.path, settings: restore, guestWasRunning: status.running,
                                                      fdName: configuration.fdName))
            } catch {
                throw failure(.notReady("cannot start the guard that restores QEMU if this process dies: \(error)"))
            }
        }
        do {
            return try await migrate(status: status, restoring: restore)
        } catch {
            await restore.apply(on: qmp, logger: logger)
            throw error
        }
    }

    private func migrate(status: QEMURunStatus, restoring restore: QEMUMigrationSettings) async throws(QEMUMigrationError) -> QEMUSourceReport {
        try await step("migrate-set-capabilities") { () async throws(QMPError) in
            try await qmp.setMigrationCapabilities(["events": true, "pause-before-switchover": preSwitchover != nil])
        }
        try await step("migrate-set-parameters") { () async throws(QMPError) in
            try await qmp.setMigrationParameters([
                "downtime-limit": .int(configuration.downtimeLimitMilliseconds),
                "max-bandwidth": .int(Int64(configuration.maxBandwidth.bytesPerSecond)),
            ])
        }
        let pair: MigrationSocketPair
        do {
            pair = try MigrationSocketPair()
        } catch {
            throw failure(.system(error))
        }
        try await step("getfd") { () async throws(QMPError) in try await qmp.getfd(name: configuration.fdName, fd: pair.qemuEnd) }
        pair.closeQEMUEnd()
        let events = qmp.events()
        let uri = "fd:\(configuration.fdName)"
        logger.info("migrating", metadata: [
            "qemu": "\(qmp.version.number)", "uri": "\(uri)", "max-bandwidth": "\(configuration.maxBandwidth)",
            "downtime-limit": "\(configuration.downtimeLimit.qmpText)",
            "pre-switchover": "\(preSwitchover != nil)", "guest": "\(status)",
        ])
        let started = ContinuousClock.now
        do {
            try await qmp.migrate(uri: uri)
        } catch {
            // QEMU did not take the descriptor: release its copy.
            try? await qmp.closefd(name: configuration.fdName)
            throw failure(.qmp(step: "migrate", error))
        }
        let run = QEMUSourceRun(source: self, pair: pair, events: events, guestWasRunning: status.running, started: started)
        let report = try await run.follow()
        await restore.apply(on: qmp, logger: logger)
        return report
    }

    func step<Value>(_ name: String, _ body: () async throws(QMPError) -> Value) async throws(QEMUMigrationError) -> Value {
        do {
            return try await body()
        } catch {
            throw failure(.qmp(step: name, error))
        }
    }

    func failure(_ reason: QEMUMigrationError.Reason) -> QEMUMigrationError {
        QEMUMigrationError(side: .source, reason: reason, guestState: nil)
    }
}

/// One outgoing migration after `migrate` was accepted: the loop over QEMU's events and the
/// relay's end, and the abort path. Used by one task only.
final class QEMUSourceRun {
    let source: QEMUMigrationSource
    let pair: MigrationSocketPair
    let inbox: MigrationRunInbox
    let guestWasRunning: Bool
    let started: ContinuousClock.Instant
    var qmp: QMPClient { source.qmp }
    var logger: Logger { source.logger }

    private var relayTask: Task<Void, Never>?
    private var relayResult: Result<QEMURelayStatistics, any Error>?
    private var statuses: [QEMUMigrationStatus] = []
    private var stop: QMPTimestamp?
    private var completed: QMPTimestamp?
    private var passes = 0
    private var hookDuration: Duration?
    private var qemuGone: QMPError?

    init(source: QEMUMigrationSource, pair: MigrationSocketPair, events: AsyncStream<QMPEvent>,
         guestWasRunning: Bool, started: ContinuousClock.Instant) {
        self.source = source
        self.pair = pair
        self.guestWasRunning = guestWasRunning
        self.started = started
        inbox = MigrationRunInbox(events: events)
    }

    var lastStatus: QEMUMigrationStatus? { statuses.last }
    var qemuFinished: Bool { lastStatus?.isFinished ?? false }

    func follow() async throws(QEMUMigrationError) -> QEMUSourceReport {
        let relay = source.relay
        // The task keeps the pair alive: a relay that outlives an abort still has a valid fd.
        relayTask = inbox.startRelay { [pair] in
            defer { withExtendedLifetime(pair) {} }
            return try await relay.relayOutgoing(from: pair.relayEnd)
        }
        inbox.setDeadline(after: source.configuration.timeout)
        while true {
            switch await inbox.next() {
            case .event(let event):
                record(event)
                guard let status = event.migrationStatus else { continue }
                if status == .preSwitchover {
                    try await continueFromPreSwitchover()
                } else if status == .completed {
                    if relayResult != nil { return try await finish() }
                    // Only the relay's last bytes remain (a socket buffer, a channel ring):
                    // a relay still busy after abortTimeout is stuck, not slow.
                    inbox.setDeadline(after: source.configuration.abortTimeout)
                } else if status == .failed || status == .cancelled {
                    throw await abort(.qemuFailed(status))
                }
            case .relayEnded(let result):
                relayResult = result
                switch result {
                case .success:
                    // The relay saw QEMU close its end; QEMU's verdict follows as an event.
                    if lastStatus == .completed { return try await finish() }
                case .failure(let error):
                    if lastStatus == .completed { throw await failedAfterCompletion(error) }
                    throw await abort(.relayFailed(error))
                }
            case .connectionEnded:
                qemuGone = qmp.endReason ?? .disconnected(path: qmp.path, detail: "during the migration")
                throw await abort(.qemuExited(qemuGone!))
            case .deadline:
                if lastStatus == .completed {
                    throw await failedAfterCompletion(RelayStuckAfterCompletion(waited: source.configuration.abortTimeout))
                }
                throw await abort(.timedOut(source.configuration.timeout, lastStatus: lastStatus))
            case .cancelled:
                throw await abort(.cancelled)
            }
        }
    }

    private func record(_ event: QMPEvent) {
        switch event.name {
        case QMPEvent.stop:
            stop = event.timestamp
        case QMPEvent.migrationPass:
            passes = Int(event.data["pass"]?.int64Value ?? Int64(passes + 1))
        case QMPEvent.migration:
            guard let status = event.migrationStatus else { return }
            statuses.append(status)
            if status == .completed { completed = event.timestamp }
            logger.info("QEMU migration \(status)", metadata: ["side": "source"])
        default:
            break
        }
    }

    private func continueFromPreSwitchover() async throws(QEMUMigrationError) {
        source.watch?.preSwitchover()
        if let hook = source.preSwitchover {
            let hookStarted = ContinuousClock.now
            do {
                try await hook()
            } catch {
                throw await abort(.hookFailed(error))
            }
            hookDuration = ContinuousClock.now - hookStarted
        }
        source.watch?.continuing()
        do {
            try await qmp.migrateContinue(from: .preSwitchover)
        } catch {
            throw await abort(.qmp(step: "migrate-continue", error))
        }
    }

    private func finish() async throws(QEMUMigrationError) -> QEMUSourceReport {
        guard case .success(let statistics)? = relayResult else {
            preconditionFailure("finish() without a successful relay")
        }
        let wallTime = ContinuousClock.now - started
        var info: QEMUMigrationInfo
        do {
            info = try await qmp.queryMigrate()
        } catch {
            // Completed is certain (QEMU said so); only its figures are missing.
            logger.warning("query-migrate after completion failed: \(error)")
            info = QEMUMigrationInfo(["status": "completed"])
        }
        let report = QEMUSourceReport(
            qemuVersion: qmp.version, info: info, relay: statistics, stopTimestamp: stop,
            completedTimestamp: completed, statuses: statuses, passes: passes,
            preSwitchoverHookDuration: hookDuration, wallTime: wallTime)
        logger.info("migration completed", metadata: ["report": "\(report.summary)"])
        return report
    }

    /// QEMU completed, the relay did not deliver: the guest is stopped here and may or may not
    /// be complete on the destination. Not resumed: only the destination's answer can say it is safe.
    private func failedAfterCompletion(_ error: any Error) async -> QEMUMigrationError {
        pair.shutdownRelayEnd()
        relayTask?.cancel()
        let (info, status) = await QMPClient.$ignoresCancellation.withValue(true) {
            (try? await qmp.queryMigrate(), try? await qmp.queryStatus())
        }
        return QEMUMigrationError(
            side: .source, reason: .relayFailedAfterCompletion(error), qemuErrorDescription: info?.errorDescription,
            guestState: "\(status?.status ?? "unknown") (not resumed)")
    }

    /// Stops the migration and puts the source guest back the way it was. Returns the error to
    /// throw. Runs to the end even in a cancelled task: the guest must not stay paused.
    private func abort(_ reason: QEMUMigrationError.Reason) async -> QEMUMigrationError {
        await QMPClient.$ignoresCancellation.withValue(true) { await cleanUp(after: reason) }
    }

    private func cleanUp(after reason: QEMUMigrationError.Reason) async -> QEMUMigrationError {
        logger.warning("abandoning the migration", metadata: ["reason": "\(reason)"])
        var notes: [String] = []
        let alive = qemuGone == nil && qmp.endReason == nil
        if alive && !qemuFinished {
            do {
                try await qmp.migrateCancel()
            } catch {
                notes.append("migrate_cancel: \(error)")
            }
        }
        // QEMU's writes now fail, and a relay blocked on its end wakes up.
        pair.shutdownRelayEnd()
        relayTask?.cancel()
        inbox.setDeadline(after: source.configuration.abortTimeout)
        var deadlinePassed = false
        while !deadlinePassed && ((alive && qemuGone == nil && !qemuFinished) || relayResult == nil) {
            switch await inbox.next() {
            case .event(let event):
                record(event)
            case .relayEnded(let result):
                relayResult = result
            case .connectionEnded:
                qemuGone = qmp.endReason ?? .disconnected(path: qmp.path, detail: "while cancelling")
            case .deadline:
                deadlinePassed = true
            case .cancelled:
                break
            }
        }
        if relayResult == nil {
            notes.append("the relay did not stop within \(source.configuration.abortTimeout.qmpText) of being cancelled")
        }
        if qemuGone != nil {
            return QEMUMigrationError(side: .source, reason: reason,
                                      guestState: "unknown: the source QEMU is gone", notes: notes)
        }
        if lastStatus == .completed {
            // The cancel came too late: QEMU finished the stream.
            notes.append("QEMU completed the migration before migrate_cancel took effect")
            return QEMUMigrationError(side: .source, reason: .relayFailedAfterCompletion(reasonError(reason)),
                                      guestState: "postmigrate (not resumed)", notes: notes)
        }
        if !qemuFinished {
            notes.append("QEMU did not report cancelled or failed within \(source.configuration.abortTimeout.qmpText) (last: \(lastStatus?.rawValue ?? "none"))")
        }
        let info = try? await qmp.queryMigrate()
        let guestState = await restoreGuest(notes: &notes)
        return QEMUMigrationError(side: .source, reason: reason, qemuErrorDescription: info?.errorDescription,
                                  guestState: guestState, notes: notes)
    }

    private func restoreGuest(notes: inout [String]) async -> String {
        let status: QEMURunStatus
        do {
            status = try await qmp.queryStatus()
        } catch {
            notes.append("query-status: \(error)")
            return "unknown"
        }
        if status.running { return "running" }
        guard guestWasRunning else { return "\(status) (it was not running before the migration)" }
        do {
            try await qmp.cont()
        } catch {
            notes.append("cont: \(error)")
            return "\(status): resuming it failed"
        }
        let after = try? await qmp.queryStatus()
        return after?.running == true ? "running (resumed with cont from \(status))" : "\(after?.status ?? "unknown") after cont"
    }

    private func reasonError(_ reason: QEMUMigrationError.Reason) -> any Error {
        switch reason {
        case .relayFailed(let error), .hookFailed(let error): return error
        default: return QEMUMigrationError(side: .source, reason: reason)
        }
    }
}

/// QEMU completed, and the relay still had not delivered the stream's end a while later.
struct RelayStuckAfterCompletion: Error, CustomStringConvertible {
    let waited: Duration
    var description: String {
        "the relay had not delivered the end of the stream \(waited.qmpText) after QEMU completed"
    }
}
