/// The guest's downtime as rdmig sees it: from the source QEMU's STOP event to the
/// destination QEMU's RESUME event, both QEMU wall-clock stamps. It includes what QEMU's own
/// `downtime` leaves out: the pre-switchover hook, the relay's last bytes, the destination's
/// hook and `cont`. Across two hosts the clocks' skew adds to it (keep them NTP-synchronised).
public struct QEMUMigrationDowntime: Sendable, Hashable, CustomStringConvertible {
    public var sourceStop: QMPTimestamp
    public var destinationResume: QMPTimestamp
    /// QEMU's own figure (source `query-migrate` downtime), for comparison.
    public var qemuDowntimeMilliseconds: Int64?

    public init(sourceStop: QMPTimestamp, destinationResume: QMPTimestamp, qemuDowntimeMilliseconds: Int64?) {
        self.sourceStop = sourceStop
        self.destinationResume = destinationResume
        self.qemuDowntimeMilliseconds = qemuDowntimeMilliseconds
    }

    /// Both reports' stamps; nil when either event was not seen.
    public init?(source: QEMUSourceReport, destination: QEMUDestinationReport) {
        guard let stop = source.stopTimestamp, let resume = destination.resumeTimestamp else { return nil }
        self.init(sourceStop: stop, destinationResume: resume, qemuDowntimeMilliseconds: source.info.downtimeMilliseconds)
    }

    public var duration: Duration { destinationResume.duration(since: sourceStop) }

    public var description: String {
        let qemu = qemuDowntimeMilliseconds.map { "; QEMU's own downtime \($0) ms" } ?? ""
        return "downtime \(duration.qmpText) from source STOP to destination RESUME\(qemu)"
    }
}
