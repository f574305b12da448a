import Logging
import RdmigSystem

/// The destination side of rdmig's QEMU mode. QEMU was started with `-incoming defer -S`:
/// it waits for `migrate-incoming`, and after loading the stream stays paused until `cont`.
///
/// Sequence: check QEMU waits for an incoming migration; `events` on; a socket pair (or a
/// pipe, for a relay that `acceptsPipe`), `getfd`,
/// `migrate-incoming uri=fd:NAME` (with `exit-on-error: false` where QEMU has it, so a failed
/// load can be queried instead of QEMU exiting); the relay writes the stream into the other
/// end. When QEMU reports `completed` the hook loads the VF state, then `cont`, then QEMU's
/// RESUME event ends the downtime. The guest does not wait for the relay's own end of stream.
///
/// QEMU's `completed` is the commit point. Before it, any failure leaves the guest unstarted
/// (never `cont`), and QEMU is told to quit when `quitOnFailure`. After it, this QEMU holds
/// the only complete copy of the guest: a failing hook or `cont` leaves it paused, never quit.
public struct QEMUMigrationDestination: Sendable {
    public let qmp: QMPClient
    public let configuration: QEMUDestinationConfiguration
    public let relay: any QEMUIncomingStreamRelay
    public let beforeResume: QEMUMigrationHook?
    public let logger: Logger

    public init(qmp: QMPClient, configuration: QEMUDestinationConfiguration = QEMUDestinationConfiguration(),
                relay: any QEMUIncomingStreamRelay, beforeResume: QEMUMigrationHook? = nil,
                logger: Logger = Logger(label: "rdmig.qemu.destination")) {
        self.qmp = qmp
        self.configuration = configuration
        self.relay = relay
        self.beforeResume = beforeResume
        self.logger = logger
    }

    public func receive() async throws(QEMUMigrationError) -> QEMUDestinationReport {
        if let problem = configuration.problem { throw failure(.notReady(problem)) }
        let status = try await step("query-status") { () async throws(QMPError) in try await qmp.queryStatus() }
        guard status.isWaitingForIncomingMigration else {
            throw failure(.notReady("the destination QEMU (\(qmp.path)) is \(status), not waiting for an incoming "
                + "migration: start it with -incoming defer -S"))
        }
        let previous = try await step("query-migrate") { () async throws(QMPError) in try await qmp.queryMigrate() }
        if let earlier = previous.status, earlier != .none {
            throw failure(.notReady("an incoming migration already ran on the destination QEMU (\(earlier)): "
                + "start a fresh one with -incoming defer -S"))
        }
        try await step("migrate-set-capabilities") { () async throws(QMPError) in
            try await qmp.setMigrationCapabilities(["events": true])
        }
        let pair: any QEMUMigrationChannelEnds
        do {
            pair = relay.acceptsPipe ? try MigrationPipe() : try MigrationSocketPair()
        } catch {
            throw failure(.system(error))
        }
        try await step("getfd") { () async throws(QMPError) in try await qmp.getfd(name: configuration.fdName, fd: pair.qemuEnd) }
        pair.closeQEMUEnd()
        let events = qmp.events()
        let uri = "fd:\(configuration.fdName)"
        logger.info("waiting for the incoming migration", metadata: [
            "qemu": "\(qmp.version.number)", "uri": "\(uri)", "channel": "\(pair.kind)", "before-resume": "\(beforeResume != nil)",
        ])
        let started = ContinuousClock.now
        do {
            try await startIncoming(uri: uri)
        } catch {
            try? await qmp.closefd(name: configuration.fdName)
            throw failure(.qmp(step: "migrate-incoming", error))
        }
        let run = QEMUDestinationRun(destination: self, pair: pair, events: events, started: started)
        return try await run.follow()
    }

    /// `exit-on-error: false` keeps QEMU up after a failed load, so query-migrate can say why
    /// and the driver decides to quit it. A QEMU without the argument refuses it while checking
    /// the arguments, before starting anything: then start without it (that QEMU exits when a
    /// load fails).
    private func startIncoming(uri: String) async throws(QMPError) {
        do {
            try await qmp.migrateIncoming(uri: uri, exitOnError: false)
        } catch let error where error.errorClass == "GenericError" && error.description.contains("exit-on-error") {
            logger.info("this QEMU has no exit-on-error for migrate-incoming: it will exit if the load fails")
            try await qmp.migrateIncoming(uri: uri)
        }
    }

    func step<Value>(_ name: String, _ body: () async throws(QMPError) -> Value) async throws(QEMUMigrationError) -> Value {
        do {
            return try await body()
        } catch {
            throw failure(.qmp(step: name, error))
        }
    }

    func failure(_ reason: QEMUMigrationError.Reason) -> QEMUMigrationError {
        QEMUMigrationError(side: .destination, reason: reason)
    }
}

/// One incoming migration after `migrate-incoming` was accepted. Used by one task only.
final class QEMUDestinationRun {
    let destination: QEMUMigrationDestination
    let pair: any QEMUMigrationChannelEnds
    let inbox: MigrationRunInbox
    let started: ContinuousClock.Instant
    var qmp: QMPClient { destination.qmp }
    var configuration: QEMUDestinationConfiguration { destination.configuration }
    var logger: Logger { destination.logger }

    private var relayTask: Task<Void, Never>?
    private var relayResult: Result<QEMURelayStatistics, any Error>?
    private var statuses: [QEMUMigrationStatus] = []
    private var completed: QMPTimestamp?
    private var resume: QMPTimestamp?
    private var contIssued = false
    private var resumedByQEMU = false
    private var qemuGone: QMPError?

    init(destination: QEMUMigrationDestination, pair: any QEMUMigrationChannelEnds, events: AsyncStream<QMPEvent>,
         started: ContinuousClock.Instant) {
        self.destination = destination
        self.pair = pair
        self.started = started
        inbox = MigrationRunInbox(events: events)
    }

    var lastStatus: QEMUMigrationStatus? { statuses.last }

    func follow() async throws(QEMUMigrationError) -> QEMUDestinationReport {
        let relay = destination.relay
        relayTask = inbox.startRelay { [pair] in
            defer { withExtendedLifetime(pair) {} }
            return try await relay.relayIncoming(to: pair.relayEnd)
        }
        inbox.setDeadline(after: configuration.timeout)
        loading: while true {
            switch await inbox.next() {
            case .event(let event):
                record(event)
                if event.migrationStatus == .completed { break loading }
                if let status = event.migrationStatus, status == .failed || status == .cancelled {
                    throw await abort(.qemuFailed(status))
                }
            case .relayEnded(let result):
                relayResult = result
                // A clean end: QEMU still loads what is buffered; its verdict follows.
                if case .failure(let error) = result { throw await abort(.relayFailed(error)) }
            case .connectionEnded:
                qemuGone = qmp.endReason ?? .disconnected(path: qmp.path, detail: "during the incoming migration")
                throw await abort(.qemuExited(qemuGone!))
            case .deadline:
                throw await abort(.timedOut(configuration.timeout, lastStatus: lastStatus))
            case .cancelled:
                throw await abort(.cancelled)
            }
        }
        return try await resumeGuest()
    }

    private func record(_ event: QMPEvent) {
        switch event.name {
        case QMPEvent.resume:
            resume = event.timestamp
            if !contIssued { resumedByQEMU = true }
        case QMPEvent.migration:
            guard let status = event.migrationStatus else { return }
            statuses.append(status)
            if status == .completed { completed = event.timestamp }
            logger.info("QEMU migration \(status)", metadata: ["side": "destination"])
        default:
            break
        }
    }

    /// After QEMU's `completed`: hook, `cont`, RESUME. Failures here leave the guest paused.
    private func resumeGuest() async throws(QEMUMigrationError) -> QEMUDestinationReport {
        var hookDuration: Duration?
        if resumedByQEMU {
            logger.warning("the destination QEMU resumed the guest by itself: start it with -S so rdmig decides when it runs")
        }
        if let hook = destination.beforeResume {
            let hookStarted = ContinuousClock.now
            do {
                try await hook()
            } catch {
                throw await failedAfterCompletion(.hookFailed(error))
            }
            hookDuration = ContinuousClock.now - hookStarted
        }
        if resume == nil {
            if Task.isCancelled { throw await failedAfterCompletion(.cancelled) }
            contIssued = true
            do {
                try await qmp.cont()
            } catch {
                throw await failedAfterCompletion(.qmp(step: "cont", error))
            }
            inbox.setDeadline(after: configuration.resumeTimeout)
            while resume == nil {
                switch await inbox.next() {
                case .event(let event):
                    record(event)
                case .relayEnded(let result):
                    relayResult = result
                case .connectionEnded:
                    qemuGone = qmp.endReason ?? .disconnected(path: qmp.path, detail: "after cont")
                    throw QEMUMigrationError(side: .destination, reason: .qemuExited(qemuGone!),
                                             guestState: "unknown: the destination QEMU is gone")
                case .deadline:
                    throw await failedAfterCompletion(.timedOut(configuration.resumeTimeout, lastStatus: lastStatus))
                case .cancelled:
                    break  // cont was sent: the guest resumes whatever happens to this task
                }
            }
        }
        let wallTime = ContinuousClock.now - started
        let runStatus: QEMURunStatus
        let info: QEMUMigrationInfo
        let (statistics, relayProblem) = await collectRelay()
        do {
            runStatus = try await qmp.queryStatus()
            info = try await qmp.queryMigrate()
        } catch {
            throw QEMUMigrationError(side: .destination, reason: .qmp(step: "query after resume", error),
                                     guestState: "resumed (RESUME seen), state unknown")
        }
        let report = QEMUDestinationReport(
            qemuVersion: qmp.version, info: info, relay: statistics, relayProblem: relayProblem,
            completedTimestamp: completed, resumeTimestamp: resume, beforeResumeHookDuration: hookDuration,
            resumedByQEMU: resumedByQEMU, runStatus: runStatus, wallTime: wallTime)
        logger.info("guest resumed on the destination", metadata: ["report": "\(report.summary)"])
        return report
    }

    /// The guest runs; give the relay a moment to see the source's end of stream.
    private func collectRelay() async -> (QEMURelayStatistics?, String?) {
        if relayResult == nil {
            inbox.setDeadline(after: configuration.relayGracePeriod)
            waiting: while relayResult == nil {
                switch await inbox.next() {
                case .event(let event): record(event)
                case .relayEnded(let result): relayResult = result
                case .connectionEnded, .deadline, .cancelled: break waiting
                }
            }
        }
        switch relayResult {
        case .success(let statistics)?:
            return (statistics, nil)
        case .failure(let error)?:
            return (nil, "the relay failed after QEMU completed: \(error)")
        case nil:
            pair.shutdownRelayEnd()
            relayTask?.cancel()
            return (nil, "the relay had not seen the end of the stream \(configuration.relayGracePeriod.qmpText) after QEMU completed; it was stopped")
        }
    }

    /// QEMU completed but the guest cannot be resumed: it stays paused, QEMU stays up.
    private func failedAfterCompletion(_ reason: QEMUMigrationError.Reason) async -> QEMUMigrationError {
        let status = await QMPClient.$ignoresCancellation.withValue(true) { try? await qmp.queryStatus() }
        return QEMUMigrationError(
            side: .destination, reason: reason,
            guestState: "\(status?.status ?? "unknown") with the complete state loaded (QEMU completed); not resumed, not quit")
    }

    /// Before completion: the guest never ran here; stop the relay, learn why, and quit QEMU.
    /// Runs to the end even in a cancelled task.
    private func abort(_ reason: QEMUMigrationError.Reason) async -> QEMUMigrationError {
        await QMPClient.$ignoresCancellation.withValue(true) { await cleanUp(after: reason) }
    }

    private func cleanUp(after reason: QEMUMigrationError.Reason) async -> QEMUMigrationError {
        logger.warning("abandoning the incoming migration", metadata: ["reason": "\(reason)"])
        var notes: [String] = []
        pair.shutdownRelayEnd()
        relayTask?.cancel()
        inbox.setDeadline(after: configuration.abortTimeout)
        var deadlinePassed = false
        func qemuSettled() -> Bool { qemuGone != nil || (lastStatus?.isFinished ?? false) }
        while !deadlinePassed && (!qemuSettled() || relayResult == nil) {
            switch await inbox.next() {
            case .event(let event):
                record(event)
            case .relayEnded(let result):
                relayResult = result
            case .connectionEnded:
                qemuGone = qmp.endReason ?? .disconnected(path: qmp.path, detail: "while abandoning")
            case .deadline:
                deadlinePassed = true
            case .cancelled:
                break
            }
        }
        if relayResult == nil {
            notes.append("the relay did not stop within \(configuration.abortTimeout.qmpText) of being cancelled")
        }
        if qemuGone != nil {
            // QEMU exits on a failed load unless it has exit-on-error (>= 9.1).
            return QEMUMigrationError(side: .destination, reason: reason,
                                      guestState: "never ran: the destination QEMU exited", notes: notes)
        }
        let info = try? await qmp.queryMigrate()
        if lastStatus == .completed {
            notes.append("QEMU completed loading the stream before the failure took effect")
            let status = try? await qmp.queryStatus()
            return QEMUMigrationError(
                side: .destination, reason: reason, qemuErrorDescription: info?.errorDescription,
                guestState: "\(status?.status ?? "unknown") with the complete state loaded; not resumed, not quit",
                notes: notes)
        }
        if !(lastStatus?.isFinished ?? false) {
            notes.append("QEMU did not report the load failed within \(configuration.abortTimeout.qmpText) (last: \(lastStatus?.rawValue ?? "none"))")
        }
        var guestState = "never ran"
        if configuration.quitOnFailure {
            do {
                try await qmp.quit()
                guestState += "; the destination QEMU was told to quit"
            } catch {
                notes.append("quit: \(error)")
                guestState += "; telling the destination QEMU to quit failed"
            }
        } else {
            guestState += "; the destination QEMU is left paused (quitOnFailure is off)"
        }
        return QEMUMigrationError(side: .destination, reason: reason, qemuErrorDescription: info?.errorDescription,
                                  guestState: guestState, notes: notes)
    }
}
