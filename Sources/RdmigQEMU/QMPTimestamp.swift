/// When QEMU emitted an event: host wall-clock time (QEMU's qapi/qmp-event.c stamps each event
/// with g_get_real_time(), split into seconds and microseconds). Two QEMUs' stamps compare
/// directly on one host; across hosts the clocks' skew adds to any difference.
public struct QMPTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var seconds: Int64
    public var microseconds: Int64

    public init(seconds: Int64, microseconds: Int64) {
        self.seconds = seconds
        self.microseconds = microseconds
    }

    /// The latest stamp whose `microsecondsSinceEpoch` fits an Int64 (year 294247).
    static let maximumSeconds = (Int64.max - 999_999) / 1_000_000

    /// Reads `{"seconds": s, "microseconds": us}`; nil when either is missing, QEMU reported
    /// -1 (it does when it could not read the clock), or the stamp is not a time (microseconds
    /// past 999999, or seconds so large that `microsecondsSinceEpoch` would overflow and trap).
    public init?(_ value: QMPValue?) {
        guard let seconds = value?["seconds"]?.int64Value, let microseconds = value?["microseconds"]?.int64Value,
              (0...Self.maximumSeconds).contains(seconds), (0..<1_000_000).contains(microseconds) else { return nil }
        self.init(seconds: seconds, microseconds: microseconds)
    }

    public var microsecondsSinceEpoch: Int64 { seconds * 1_000_000 + microseconds }

    /// The time from `earlier` to this timestamp (negative when `earlier` is later).
    public func duration(since earlier: QMPTimestamp) -> Duration {
        .microseconds(microsecondsSinceEpoch - earlier.microsecondsSinceEpoch)
    }

    public static func < (a: QMPTimestamp, b: QMPTimestamp) -> Bool {
        a.microsecondsSinceEpoch < b.microsecondsSinceEpoch
    }

    public var description: String {
        let fraction = String(microseconds)
        return "\(seconds).\(String(repeating: "0", count: max(0, 6 - fraction.count)))\(fraction)"
    }
}
