/// A completed outgoing migration: QEMU's own figures next to rdmig's.
public struct QEMUSourceReport: Sendable {
    public var qemuVersion: QEMUVersion
    /// `query-migrate` after completion: total-time, downtime, setup-time, ram statistics.
    public var info: QEMUMigrationInfo
    /// The relay's figures: bytes carried, time, stalls.
    public var relay: QEMURelayStatistics
    /// QEMU's STOP event: the guest stopped for the switchover (start of the downtime).
    public var stopTimestamp: QMPTimestamp?
    /// QEMU's MIGRATION `completed` event.
    public var completedTimestamp: QMPTimestamp?
    /// The MIGRATION statuses in the order QEMU reported them.
    public var statuses: [QEMUMigrationStatus]
    /// RAM passes (MIGRATION_PASS events).
    public var passes: Int
    /// How long the pre-switchover hook took (nil without a hook); part of the downtime.
    public var preSwitchoverHookDuration: Duration?
    /// From `migrate` to the relay's end, as rdmig measured it.
    public var wallTime: Duration

    public init(qemuVersion: QEMUVersion, info: QEMUMigrationInfo, relay: QEMURelayStatistics,
                stopTimestamp: QMPTimestamp?, completedTimestamp: QMPTimestamp?, statuses: [QEMUMigrationStatus],
                passes: Int, preSwitchoverHookDuration: Duration?, wallTime: Duration) {
        self.qemuVersion = qemuVersion
        self.info = info
        self.relay = relay
        self.stopTimestamp = stopTimestamp
        self.completedTimestamp = completedTimestamp
        self.statuses = statuses
        self.passes = passes
        self.preSwitchoverHookDuration = preSwitchoverHookDuration
        self.wallTime = wallTime
    }

    public var summary: String {
        var text = "QEMU \(qemuVersion.number) source: \(info.summary) passes=\(passes); relay \(relay); wall \(wallTime.qmpText)"
        if let hook = preSwitchoverHookDuration { text += "; pre-switchover hook \(hook.qmpText)" }
        return text
    }
}
