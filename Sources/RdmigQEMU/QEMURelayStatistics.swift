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
    /// Pieces the stream travelled in (a byte-stream channel's slots); zero when the relay
    /// does not count them. Bytes over chunks is the average piece: small pieces mean more
    /// posts, completions, credits and syscalls per byte.
    public var chunks: UInt64
    /// CPU time the whole process used while the relay ran (all threads, transport included);
    /// nil when not measured.
    public var cpuTime: Duration?

    public init(bytes: UInt64, elapsed: Duration, stallTime: Duration = .zero, chunks: UInt64 = 0, cpuTime: Duration? = nil) {
        self.bytes = bytes
        self.elapsed = elapsed
        self.stallTime = stallTime
        self.chunks = chunks
        self.cpuTime = cpuTime
    }

    /// Bytes over elapsed time (zero for an instant relay).
    public var bandwidth: ByteRate {
        let seconds = elapsed.seconds
        return ByteRate(bytesPerSecond: seconds > 0 ? UInt64(Double(bytes) / seconds) : 0)
    }

    public var description: String {
        "\(ByteCount(bytes).humanReadable) in \(elapsed.qmpText) (\(ByteCount.humanReadable(Double(bandwidth.bytesPerSecond)))/s, "
            + "stalled \(stallTime.qmpText)" + (chunks > 0 ? ", \(chunks) chunks" : "")
            + (cpuTime.map { ", CPU \($0.qmpText)" } ?? "") + ")"
    }
}
