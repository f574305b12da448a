import Logging

/// What to do with a source QEMU whose rdmig service died in the middle of an outgoing
/// migration, decided from QEMU's own migration status and the last thing the service said,
/// and done over a fresh QMP connection (the dead service's connection is gone, so QEMU's
/// one-client-at-a-time QMP socket serves this one).
///
/// The rule is "exactly one running copy": the destination runs the guest only after it
/// loaded the whole stream, and QEMU writes the stream's end only after it left pre-copy on
/// its own (no pause-before-switchover) or after `migrate-continue`. So:
/// - migration in progress and `migrate-continue` never sent: cancel it, resume the guest if
///   it ran before (QEMU restarts it itself after a cancel; `cont` is the fallback), restore
///   the settings. The service's death also closed the relay's end of QEMU's socket, so any
///   stream end QEMU writes now reaches nobody.
/// - still at pre-switchover although `migrate-continue` was about to be sent: QEMU never
///   executed it (a command of a client that went away is either done or dropped before the
///   next client is served), so the stream's end was never written: as above.
/// - `migrate-continue` sent and QEMU past pre-switchover, or QEMU `completed`: hands off. The
///   destination may hold the whole stream and run the guest; resuming this copy could make
///   two. Only the settings are put back, once QEMU reports the migration over (it refuses
///   capability changes during one, and a parameter change would alter the running one).
///
/// One window stays open: without pause-before-switchover QEMU leaves pre-copy on its own;
/// if the service relayed the stream's very end and died in the microseconds before QEMU
/// marked the migration `completed`, a cancel arriving in between would resume a guest the
/// destination also has. The watchdog's reaction takes milliseconds (reading the pipe's end,
/// connecting, `query-migrate`), so QEMU has long said `completed` by then.
public enum QEMUSourceRecovery {
    /// What the service hands the guard before it changes QEMU.
    public struct Plan: Sendable, Hashable {
        public var qmpPath: String
        public var settings: QEMUMigrationSettings
        /// Whether the vCPUs ran before the migration: only then may the guard `cont`.
        public var guestWasRunning: Bool
        /// The name the migration socket gets with `getfd`: a death between `getfd` and
        /// `migrate` leaves QEMU holding it.
        public var fdName: String

        public init(qmpPath: String, settings: QEMUMigrationSettings, guestWasRunning: Bool, fdName: String) {
            self.qmpPath = qmpPath
            self.settings = settings
            self.guestWasRunning = guestWasRunning
            self.fdName = fdName
        }

        public var qmpValue: QMPValue {
            ["qmp": .string(qmpPath), "settings": settings.qmpValue, "guest-was-running": .bool(guestWasRunning), "fd-name": .string(fdName)]
        }

        public init?(qmpValue value: QMPValue) {
            guard let path = value["qmp"]?.stringValue, let settings = value["settings"].flatMap(QEMUMigrationSettings.init(qmpValue:)),
                  let running = value["guest-was-running"]?.boolValue, let fdName = value["fd-name"]?.stringValue else { return nil }
            self.init(qmpPath: path, settings: settings, guestWasRunning: running, fdName: fdName)
        }
    }

    public enum Decision: Sendable, Equatable, CustomStringConvertible {
        /// migrate_cancel, then as `resumeIfPaused`.
        case cancelAndResume
        /// No migration under way and it never passed the hand-over: `cont` a guest that ran
        /// before and is paused now, then restore the settings.
        case resumeIfPaused
        /// No migration was started: only the settings (and a socket QEMU may hold from `getfd`).
        case settingsOnly
        /// The destination may run the guest: never cancel, never `cont`; the settings once
        /// QEMU's migration is over.
        case handsOff

        public var description: String {
            switch self {
            case .cancelAndResume: return "cancel the migration, resume the guest, restore the settings"
            case .resumeIfPaused: return "resume the guest if it was paused by the migration, restore the settings"
            case .settingsOnly: return "restore the settings"
            case .handsOff: return "hands off (the destination may run the guest): restore the settings only once the migration is over"
            }
        }
    }

    /// Pure decision over QEMU's migration status (nil: query-migrate had none) and whether
    /// the service had announced `migrate-continue`.
    public static func decide(status: QEMUMigrationStatus?, continuing: Bool) -> Decision {
        guard let status, status != .none else { return .settingsOnly }
        if status == .completed { return .handsOff }
        if status.isFinished { return continuing ? .handsOff : .resumeIfPaused }
        if continuing && status != .preSwitchover { return .handsOff }
        return .cancelAndResume
    }

    /// What the recovery found and did, for the watchdog's log.
    public struct Outcome: Sendable, CustomStringConvertible {
        public var statusBefore: QEMUMigrationStatus?
        public var decision: Decision
        public var statusAfter: QEMUMigrationStatus?
        public var runStatusAfter: QEMURunStatus?
        public var settingsRestored = false
        public var notes: [String] = []

        public var description: String {
            var text = "QEMU's migration was \(statusBefore?.rawValue ?? "none"): \(decision); now migration "
                + "\(statusAfter?.rawValue ?? "none"), guest \(runStatusAfter?.status ?? "unknown"), settings "
                + (settingsRestored ? "restored" : "not restored")
            if !notes.isEmpty { text += " (\(notes.joined(separator: "; ")))" }
            return text
        }
    }

    /// Carries the decision out on `qmp`; `waitForEnd` bounds each wait for QEMU to finish
    /// its migration (after a cancel, or before restoring settings when hands off).
    public static func recover(plan: Plan, continuing: Bool, qmp: QMPClient, waitForEnd: Duration = .seconds(30),
                               logger: Logger) async -> Outcome {
        await QMPClient.$ignoresCancellation.withValue(true) {
            var status: QEMUMigrationStatus?
            var notes: [String] = []
            do {
                status = try await qmp.queryMigrate().status
            } catch {
                notes.append("query-migrate: \(error)")
            }
            let decision = decide(status: status, continuing: continuing)
            var outcome = Outcome(statusBefore: status, decision: decision)
            logger.notice("QEMU's migration is \(status?.rawValue ?? "none"): \(decision)")
            var after = status
            var mayResume = decision == .cancelAndResume || decision == .resumeIfPaused
            if decision == .cancelAndResume {
                do {
                    try await qmp.migrateCancel()
                } catch {
                    notes.append("migrate_cancel: \(error)")
                }
                after = await finishedStatus(qmp, within: waitForEnd)
                if after == .completed {
                    // QEMU finished the stream before the cancel took: it is the destination's now.
                    notes.append("QEMU completed the migration before migrate_cancel took effect")
                    outcome.decision = .handsOff
                    mayResume = false
                }
            } else if decision == .handsOff, let current = after, current.isInProgress {
                after = await finishedStatus(qmp, within: waitForEnd)
            }
            if mayResume && plan.guestWasRunning {
                await resume(qmp, notes: &notes)
            }
            if decision == .settingsOnly {
                // QEMU answers "not found" when the service never got as far as getfd.
                try? await qmp.closefd(name: plan.fdName)
            }
            if after.map({ !$0.isInProgress }) ?? true {
                do {
                    try await plan.settings.applyOrThrow(on: qmp)
                    outcome.settingsRestored = true
                } catch {
                    notes.append("restoring the settings: \(error)")
                }
            } else {
                notes.append("the migration was still \(after!) after \(waitForEnd.qmpText): settings left as they are")
            }
            outcome.statusAfter = try? await qmp.queryMigrate().status
            outcome.runStatusAfter = try? await qmp.queryStatus()
            outcome.notes = notes
            return outcome
        }
    }

    /// Polls query-migrate until QEMU says the migration is over (or `limit` passes).
    static func finishedStatus(_ qmp: QMPClient, within limit: Duration) async -> QEMUMigrationStatus? {
        let deadline = ContinuousClock.now + limit
        var status: QEMUMigrationStatus?
        while true {
            status = try? await qmp.queryMigrate().status
            if status.map({ !$0.isInProgress }) ?? true || ContinuousClock.now >= deadline { return status }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    static func resume(_ qmp: QMPClient, notes: inout [String]) async {
        do {
            if try await qmp.queryStatus().running { return }
            try await qmp.cont()
        } catch {
            notes.append("cont: \(error)")
        }
    }
}
