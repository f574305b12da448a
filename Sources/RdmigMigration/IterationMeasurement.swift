/// What one pre-copy pass measured, handed to `ConvergencePolicy.decide(after:)`.
public struct IterationMeasurement: Sendable, Equatable {
    /// 1 for the first (bulk) pass.
    public var iteration: Int
    /// Bytes the pass put on the wire (pages, zero-page markers, VF pre-copy data).
    public var bytesSent: UInt64
    /// Wall time of the pass, from its collect-and-clear to the next one: the sending time
    /// for the bandwidth, and the window in which the guest dirtied `remainingDirtyBytes`.
    public var elapsed: Duration
    /// Part of `elapsed` spent scanning pages that were all zero: CPU time, not link time, so
    /// the bandwidth leaves it out (a first pass over a mostly empty guest is mostly this).
    public var zeroScanTime: Duration
    /// Bytes dirty now, which the next pass (or the stop-and-copy) must send.
    public var remainingDirtyBytes: UInt64
    /// VF state still to move in STOP_COPY (VFIO MIG_DATA_SIZE stop_copy_length).
    public var deviceStopCopyBytes: UInt64
    /// Bytes the guest dirtied during the pass; nil means `remainingDirtyBytes` (true when
    /// every dirty page was sent, as in pre-copy).
    public var bytesDirtied: UInt64?
    /// Measured fixed costs of a switchover that do not scale with bytes: pausing the guest,
    /// the VF's STOP_COPY transition, control round trips, verification, resume.
    public var fixedSwitchoverCost: Duration

    public init(
        iteration: Int, bytesSent: UInt64, elapsed: Duration, zeroScanTime: Duration = .zero, remainingDirtyBytes: UInt64,
        deviceStopCopyBytes: UInt64 = 0, bytesDirtied: UInt64? = nil, fixedSwitchoverCost: Duration = .zero
    ) {
        self.iteration = iteration
        self.bytesSent = bytesSent
        self.elapsed = elapsed
        self.zeroScanTime = zeroScanTime
        self.remainingDirtyBytes = remainingDirtyBytes
        self.deviceStopCopyBytes = deviceStopCopyBytes
        self.bytesDirtied = bytesDirtied
        self.fixedSwitchoverCost = fixedSwitchoverCost
    }

    /// Bytes per second the guest dirtied during the pass.
    public var dirtyRate: Double {
        guard elapsed > .zero else { return 0 }
        return Double(bytesDirtied ?? remainingDirtyBytes) / elapsed.seconds
    }
}
