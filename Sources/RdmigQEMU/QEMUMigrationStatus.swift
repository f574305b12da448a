/// A migration's state as QEMU names it (MigrationStatus in qapi/migration.json). Kept open
/// (any string) so that a newer QEMU's states pass through instead of failing to decode.
public struct QEMUMigrationStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    public static let none = QEMUMigrationStatus(rawValue: "none")
    public static let setup = QEMUMigrationStatus(rawValue: "setup")
    public static let active = QEMUMigrationStatus(rawValue: "active")
    /// The source is stopped and waits for `migrate-continue` (capability pause-before-switchover).
    public static let preSwitchover = QEMUMigrationStatus(rawValue: "pre-switchover")
    /// Device state is being sent after the switchover.
    public static let device = QEMUMigrationStatus(rawValue: "device")
    public static let completed = QEMUMigrationStatus(rawValue: "completed")
    public static let failed = QEMUMigrationStatus(rawValue: "failed")
    public static let cancelling = QEMUMigrationStatus(rawValue: "cancelling")
    public static let cancelled = QEMUMigrationStatus(rawValue: "cancelled")

    /// completed, failed or cancelled: QEMU does nothing more for this migration.
    public var isFinished: Bool { self == .completed || self == .failed || self == .cancelled }

    /// A migration in one of these states is under way (QEMU refuses a second one).
    public var isInProgress: Bool {
        !(isFinished || self == .none) && !rawValue.isEmpty
    }

    public var description: String { rawValue }
}
