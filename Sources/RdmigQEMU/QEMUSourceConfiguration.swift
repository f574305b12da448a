import RdmigSystem

/// How the source side drives QEMU's outgoing migration.
public struct QEMUSourceConfiguration: Sendable, Hashable {
    /// QEMU's `max-bandwidth`: set it from the transport's measured bandwidth. QEMU's default
    /// (128 MiB/s, migration/options.c) throttles every stream, and a guest dirtying faster
    /// than that never converges.
    public var maxBandwidth: ByteRate
    /// QEMU's `downtime-limit`: it switches over once the pending bytes fit this time at the
    /// measured bandwidth (QEMU's default 300 ms).
    public var downtimeLimit: Duration
    /// The name under which QEMU holds the migration fd between `getfd` and `migrate`.
    public var fdName: String
    /// The whole migration, from `migrate` to the relay's end.
    public var timeout: Duration
    /// For cleaning up after a failure: QEMU's verdict after migrate_cancel, the relay's stop.
    public var abortTimeout: Duration

    /// QMP carries max-bandwidth as a JSON integer; QEMU takes anything up to SIZE_MAX.
    public static let largestMaxBandwidth = ByteRate(bytesPerSecond: UInt64(Int64.max))

    public init(maxBandwidth: ByteRate, downtimeLimit: Duration = .milliseconds(300), fdName: String = "rdmig-migration",
                timeout: Duration = .seconds(600), abortTimeout: Duration = .seconds(30)) {
        self.maxBandwidth = maxBandwidth
        self.downtimeLimit = downtimeLimit
        self.fdName = fdName
        self.timeout = timeout
        self.abortTimeout = abortTimeout
    }

    /// What is wrong with the configuration, in words; nil when QEMU will accept it.
    public var problem: String? {
        if maxBandwidth.bytesPerSecond == 0 {
            return "max-bandwidth must be above 0 (set it from the transport's measured bandwidth)"
        }
        if maxBandwidth.bytesPerSecond > QEMUSourceConfiguration.largestMaxBandwidth.bytesPerSecond {
            return "max-bandwidth \(maxBandwidth) does not fit a QMP integer (at most \(Int64.max) bytes/s)"
        }
        // QEMU 10.0 refuses more: "expects an integer in the range of 0 to (2000 * 1000) ms".
        if downtimeLimit < .zero || downtimeLimit > .seconds(2000) {
            return "downtime-limit \(downtimeLimit.qmpText) is outside QEMU's range of 0 to 2000 s"
        }
        if fdName.isEmpty || fdName.first!.isNumber {
            return "fd name '\(fdName)' must not be empty or start with a digit (QEMU reads fd:N as a descriptor number)"
        }
        return nil
    }

    var downtimeLimitMilliseconds: Int64 { Int64(downtimeLimit.milliseconds.rounded()) }
}
