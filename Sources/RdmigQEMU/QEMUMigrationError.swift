import RdmigSystem

/// A QEMU-mode migration that did not complete: why, what QEMU said, and what the driver did
/// with the guest afterwards (the part an operator needs first: is my VM running, and where).
public struct QEMUMigrationError: Error, CustomStringConvertible {
    public enum Side: String, Sendable {
        case source
        case destination
    }

    public enum Reason: Sendable {
        /// A QMP command failed or was refused (`step` names it), before or during the migration.
        case qmp(step: String, QMPError)
        /// QEMU is not in a state to start (not running, not waiting for an incoming migration,
        /// a migration already active, a configuration QEMU would refuse).
        case notReady(String)
        /// The stream relay failed before QEMU completed.
        case relayFailed(any Error)
        /// The source QEMU completed, but the relay could not confirm the destination got
        /// everything. The source stays in postmigrate: resuming it is safe only once the
        /// destination is known not to run the guest.
        case relayFailedAfterCompletion(any Error)
        /// The caller's hook (VF state out of band) failed.
        case hookFailed(any Error)
        /// QEMU reported the migration failed or cancelled.
        case qemuFailed(QEMUMigrationStatus)
        /// The QMP connection ended: QEMU exited or crashed.
        case qemuExited(QMPError)
        /// Not finished within the configured time.
        case timedOut(Duration, lastStatus: QEMUMigrationStatus?)
        /// The driver's task was cancelled (e.g. the service shuts down).
        case cancelled
        /// Setting up the migration channel failed.
        case system(SystemCallError)
    }

    public var side: Side
    public var reason: Reason
    /// QEMU's `error-desc` from `query-migrate`, when it gave one.
    public var qemuErrorDescription: String?
    /// What the guest on this side is doing now, and what the driver did to get it there.
    public var guestState: String?
    /// Secondary problems met while cleaning up.
    public var notes: [String]

    public init(side: Side, reason: Reason, qemuErrorDescription: String? = nil, guestState: String? = nil,
                notes: [String] = []) {
        self.side = side
        self.reason = reason
        self.qemuErrorDescription = qemuErrorDescription
        self.guestState = guestState
        self.notes = notes
    }

    public var description: String {
        var text = "QEMU migration (\(side.rawValue)) failed: "
        switch reason {
        case .qmp(let step, let error):
            text += "\(step): \(error)"
        case .notReady(let detail):
            text += detail
        case .relayFailed(let error):
            text += "the stream relay failed: \(error)"
        case .relayFailedAfterCompletion(let error):
            text += "QEMU completed but the stream relay failed afterwards, so the destination may not have "
                + "the whole stream: \(error). The source stays stopped (postmigrate); resume it (cont) only "
                + "once the destination is known not to run the guest"
        case .hookFailed(let error):
            text += side == .source
                ? "the pre-switchover hook (VF state) failed: \(error)"
                : "the before-resume hook (loading VF state) failed: \(error)"
        case .qemuFailed(let status):
            text += "QEMU reports the migration \(status)"
        case .qemuExited(let error):
            text += "QEMU went away: \(error)"
        case .timedOut(let limit, let status):
            text += "not finished within \(limit.qmpText) (QEMU's last status: \(status?.rawValue ?? "none"))"
        case .cancelled:
            text += "cancelled (the service stopped it)"
        case .system(let error):
            text += "\(error)"
        }
        if let qemuErrorDescription { text += "; QEMU says: \(qemuErrorDescription)" }
        if let guestState { text += "; guest: \(guestState)" }
        if !notes.isEmpty { text += "; also: " + notes.joined(separator: "; ") }
        return text
    }
}
