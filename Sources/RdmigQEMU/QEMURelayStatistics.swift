import RdmigSystem

/// What a stream relay did with QEMU's migration stream: rdmig's figures, reported next to
/// QEMU's own `query-migrate` figures.
public struct QEMURelayStatistics: Sendable, Hashable, CustomStringConvertible {
    public var bytes: UInt64
    /// From the relay's start to its end of stream.
    public var elapsed: Duration
    /// Time the relay spent waiting for the far side (a byte-stream channel's credits, a slow
    /// reader); zero when the relay does not measure it.
    public var stallTime: Duration

    public init(bytes: UInt64, elapsed: Duration, stallTime: Duration = .zero) {
        self.bytes = bytes
        self.elapsed = elapsed
        self.stallTime = stallTime
    }

    /// Bytes over elapsed time (zero for an instant relay).
    public var bandwidth: ByteRate {
        let seconds = elapsed.seconds
        return ByteRate(bytesPerSecond: seconds > 0 ? UInt64(Double(bytes) / seconds) : 0)
    }

    public var description: String {
        "\(ByteCount(bytes).humanReadable) in \(elapsed.qmpText) (\(ByteCount.humanReadable(Double(bandwidth.bytesPerSecond)))/s, "
            + "stalled \(stallTime.qmpText))"
    }
}
