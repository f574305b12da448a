/// An asynchronous QMP message: `{"event": NAME, "data": {...}, "timestamp": {...}}`.
public struct QMPEvent: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    /// The event's `data` member (`.object([:])` when QEMU sent none, as for STOP).
    public var data: QMPValue
    /// QEMU's wall-clock stamp; nil only when QEMU could not read its clock.
    public var timestamp: QMPTimestamp?

    public init(name: String, data: QMPValue = .object([:]), timestamp: QMPTimestamp?) {
        self.name = name
        self.data = data
        self.timestamp = timestamp
    }

    /// Reads an event message; nil when `message` is not one.
    package init?(message: QMPValue) {
        guard let name = message["event"]?.stringValue else { return nil }
        self.init(name: name, data: message["data"] ?? .object([:]), timestamp: QMPTimestamp(message["timestamp"]))
    }

    /// `data.status` of a MIGRATION event.
    public var migrationStatus: QEMUMigrationStatus? {
        guard name == QMPEvent.migration, let status = data["status"]?.stringValue else { return nil }
        return QEMUMigrationStatus(rawValue: status)
    }

    public var description: String {
        let stamp = timestamp.map { " at \($0)" } ?? ""
        if case .object(let members) = data, members.isEmpty { return "\(name)\(stamp)" }
        return "\(name) \(data)\(stamp)"
    }

    // The events rdmig's QEMU mode follows (qapi/run-state.json, qapi/migration.json).
    public static let stop = "STOP"
    public static let resume = "RESUME"
    public static let migration = "MIGRATION"
    public static let migrationPass = "MIGRATION_PASS"
    public static let shutdown = "SHUTDOWN"
}
