/// The downtime a switchover now would cost: what is left to send over the bandwidth, plus
/// the fixed costs.
public struct DowntimePrediction: Sendable, Equatable, CustomStringConvertible {
    public var dirtyBytes: UInt64
    public var deviceBytes: UInt64
    /// Bytes per second used for the prediction (0 when there was nothing to send).
    public var bandwidth: Double
    public var fixedCost: Duration
    public var limit: Duration

    public init(dirtyBytes: UInt64, deviceBytes: UInt64, bandwidth: Double, fixedCost: Duration, limit: Duration) {
        self.dirtyBytes = dirtyBytes
        self.deviceBytes = deviceBytes
        self.bandwidth = bandwidth
        self.fixedCost = fixedCost
        self.limit = limit
    }

    /// Seconds to move the remaining bytes: the downtime's lower bound.
    public var transferSeconds: Double {
        let bytes = Double(dirtyBytes) + Double(deviceBytes)
        if bytes == 0 { return 0 }
        return bandwidth > 0 ? bytes / bandwidth : .infinity
    }

    public var totalSeconds: Double { transferSeconds + fixedCost.seconds }
    public var fitsLimit: Bool { totalSeconds <= limit.seconds }

    /// "12.00 MiB dirty + 1.20 MiB device over 1.10 GiB/s = 11.6 ms + 3.0 ms fixed <= 50.0 ms limit"
    public var description: String {
        let relation = fitsLimit ? "<=" : ">"
        return "\(ByteCountText.human(dirtyBytes)) dirty + \(ByteCountText.human(deviceBytes)) device over "
            + "\(DurationText.rate(bandwidth)) = \(DurationText.shortMilliseconds(transferSeconds)) + "
            + "\(DurationText.shortMilliseconds(fixedCost.seconds)) fixed \(relation) "
            + "\(DurationText.shortMilliseconds(limit.seconds)) limit"
    }
}
