/// A completed incoming migration: the destination guest runs.
public struct QEMUDestinationReport: Sendable {
    public var qemuVersion: QEMUVersion
    /// `query-migrate` on the destination after completion.
    public var info: QEMUMigrationInfo
    /// The relay's figures; nil when it had not seen the end of the stream within the grace
    /// period after QEMU completed (then `relayProblem` says why).
    public var relay: QEMURelayStatistics?
    /// A relay failure after QEMU had completed: QEMU had the whole stream, so the guest runs,
    /// but the service should know.
    public var relayProblem: String?
    /// QEMU's MIGRATION `completed` event: the whole stream is loaded.
    public var completedTimestamp: QMPTimestamp?
    /// QEMU's RESUME event: the guest runs again here (end of the downtime).
    public var resumeTimestamp: QMPTimestamp?
    /// How long the before-resume hook took (nil without a hook); part of the downtime.
    public var beforeResumeHookDuration: Duration?
    /// True when QEMU resumed the guest by itself (it was started without -S), before the hook
    /// and `cont` could run.
    public var resumedByQEMU: Bool
    /// `query-status` at the end ("running").
    public var runStatus: QEMURunStatus
    /// From `migrate-incoming` to RESUME, as rdmig measured it.
    public var wallTime: Duration

    public init(qemuVersion: QEMUVersion, info: QEMUMigrationInfo, relay: QEMURelayStatistics?, relayProblem: String?,
                completedTimestamp: QMPTimestamp?, resumeTimestamp: QMPTimestamp?, beforeResumeHookDuration: Duration?,
                resumedByQEMU: Bool, runStatus: QEMURunStatus, wallTime: Duration) {
        self.qemuVersion = qemuVersion
        self.info = info
        self.relay = relay
        self.relayProblem = relayProblem
        self.completedTimestamp = completedTimestamp
        self.resumeTimestamp = resumeTimestamp
        self.beforeResumeHookDuration = beforeResumeHookDuration
        self.resumedByQEMU = resumedByQEMU
        self.runStatus = runStatus
        self.wallTime = wallTime
    }

    public var summary: String {
        var text = "QEMU \(qemuVersion.number) destination: \(info.summary) guest=\(runStatus)"
        text += relay.map { "; relay \($0)" } ?? "; relay unfinished"
        if let problem = relayProblem { text += " (\(problem))" }
        if let hook = beforeResumeHookDuration { text += "; before-resume hook \(hook.qmpText)" }
        if resumedByQEMU { text += "; QEMU resumed the guest by itself (started without -S)" }
        return text + "; wall \(wallTime.qmpText)"
    }
}
