import RdmigSystem

/// A snapshot of a running migration for the progress line.
public struct MigrationProgress: Sendable, Equatable {
    public enum Phase: String, Sendable {
        case setup, precopy = "pre-copy", switchover, commit, completed, failed
    }

    public var phase: Phase
    public var iteration: Int
    public var elapsed: Duration
    public var transferred: UInt64
    /// Guest memory size, so the first pass can show how far it got.
    public var guestBytes: UInt64
    public var remainingDirtyBytes: UInt64
    public var bandwidth: Double
    public var dirtyRate: Double
    public var throttlePercent: Int

    public init(
        phase: Phase, iteration: Int = 0, elapsed: Duration = .zero, transferred: UInt64 = 0, guestBytes: UInt64 = 0,
        remainingDirtyBytes: UInt64 = 0, bandwidth: Double = 0, dirtyRate: Double = 0, throttlePercent: Int = 0
    ) {
        self.phase = phase
        self.iteration = iteration
        self.elapsed = elapsed
        self.transferred = transferred
        self.guestBytes = guestBytes
        self.remainingDirtyBytes = remainingDirtyBytes
        self.bandwidth = bandwidth
        self.dirtyRate = dirtyRate
        self.throttlePercent = throttlePercent
    }

    /// "pre-copy  pass 3  1.02 GiB sent of 1.00 GiB guest  12.00 MiB dirty  1.10 GiB/s  dirty 256.00 MiB/s  2.1 s"
    public var line: String {
        var parts = [phase.rawValue]
        if iteration > 0 { parts.append("pass \(iteration)") }
        parts.append("\(ByteCountText.human(transferred)) sent of \(ByteCountText.human(guestBytes)) guest")
        parts.append("\(ByteCountText.human(remainingDirtyBytes)) dirty")
        parts.append(DurationText.rate(bandwidth))
        parts.append("dirty " + DurationText.rate(dirtyRate))
        if throttlePercent > 0 { parts.append("throttle \(throttlePercent)%") }
        parts.append(formatFixed(elapsed.seconds, decimals: 1) + " s")
        return parts.joined(separator: "  ")
    }
}
