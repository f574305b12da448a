import RdmigSystem

/// The convergence policy's knobs. Defaults follow QEMU where QEMU has the same knob
/// (migration/options.c: cpu-throttle-initial 20, cpu-throttle-increment 10,
/// max-cpu-throttle 99, throttle-trigger-threshold 50), except the downtime limit: QEMU's
/// default is 300 ms, rdmig's target is 50 ms.
public struct ConvergenceConfiguration: Sendable, Equatable {
    /// Switch over when the predicted downtime is at most this.
    public var downtimeLimit: Duration = .milliseconds(50)
    /// Pre-copy passes before the policy stops waiting for convergence by itself.
    public var maxIterations: Int = 30
    public var onNoConvergence: NoConvergenceAction = .throttle
    /// Auto-converge steps, in percent of the guest's time spent throttled.
    public var throttleInitial: Int = 20
    public var throttleIncrement: Int = 10
    public var throttleMax: Int = 99
    /// The dirty rate "outruns" the link when a pass dirties more than this percentage of
    /// the bytes it sent, two passes in a row.
    public var throttleTriggerThreshold: Int = 50
    /// Bandwidth is measured over windows at least this long (QEMU: 100 ms), then smoothed.
    public var bandwidthWindow: Duration = .milliseconds(100)
    /// Weight of the newest window in the moving average (1 = newest window only).
    public var bandwidthSmoothing: Double = 0.5
    /// A bandwidth to predict with before the first full window (for example the transport's
    /// measured rate); nil uses the partial window's rate.
    public var initialBandwidth: ByteRate?

    public init() {}

    public func validate() throws(MigrationConfigurationError) {
        guard downtimeLimit > .zero else {
            throw .outOfRange(key: "downtime-limit", value: "\(downtimeLimit)", rule: "greater than 0, e.g. 50ms")
        }
        guard maxIterations >= 1 else {
            throw .outOfRange(key: "max-iterations", value: "\(maxIterations)", rule: "at least 1")
        }
        guard (1...99).contains(throttleMax) else {
            throw .outOfRange(key: "throttle-max", value: "\(throttleMax)", rule: "1 to 99 percent")
        }
        guard (1...throttleMax).contains(throttleInitial) else {
            throw .outOfRange(key: "throttle-initial", value: "\(throttleInitial)",
                              rule: "1 to throttle-max (\(throttleMax)) percent")
        }
        guard (1...99).contains(throttleIncrement) else {
            throw .outOfRange(key: "throttle-increment", value: "\(throttleIncrement)", rule: "1 to 99 percent")
        }
        guard (1...1000).contains(throttleTriggerThreshold) else {
            throw .outOfRange(key: "throttle-trigger-threshold", value: "\(throttleTriggerThreshold)",
                              rule: "1 to 1000 percent of the bytes sent per pass")
        }
        guard bandwidthWindow > .zero else {
            throw .outOfRange(key: "bandwidth-window", value: "\(bandwidthWindow)", rule: "greater than 0, e.g. 100ms")
        }
        guard bandwidthSmoothing > 0, bandwidthSmoothing <= 1 else {
            throw .outOfRange(key: "bandwidth-smoothing", value: "\(bandwidthSmoothing)", rule: "above 0, at most 1")
        }
        if let initialBandwidth, initialBandwidth.bytesPerSecond == 0 {
            throw .outOfRange(key: "initial-bandwidth", value: "0", rule: "greater than 0, or leave it unset")
        }
    }
}
