/// Decides after each pre-copy pass whether to run another, switch over, throttle the guest,
/// force the switchover or give up. Pure logic over the numbers it is given: no clock, no I/O.
///
/// The rule (README, "Switchover"): switch over when
///     predicted downtime = (remaining dirty bytes + device stop-copy bytes) / bandwidth + fixed costs
/// is at most the downtime limit. QEMU's own test is the same idea without the device term
/// and fixed costs (migration.c: threshold_size = bandwidth x downtime_limit).
/// When pre-copy is not converging — `max-iterations` passes done, or the guest dirtied more
/// than `throttle-trigger-threshold`% of what a pass sent, two passes in a row (QEMU's
/// auto-converge trigger, migration/ram.c migration_trigger_throttle) — the configured
/// `on-no-convergence` applies: throttle 20% then +10% per step up to 99% (QEMU's
/// cpu-throttle defaults, migration/options.c), force, or fail. QEMU counts high passes
/// without requiring them to be consecutive; here one quiet pass resets the count, so a
/// single burst does not force a switchover.
public struct ConvergencePolicy: Sendable {
    public let configuration: ConvergenceConfiguration
    public private(set) var bandwidth: BandwidthEstimator
    /// The throttle currently asked of the guest (0 = none).
    public private(set) var throttlePercent = 0
    public private(set) var decisions: [ConvergenceDecision] = []
    private var highDirtyPasses = 0

    public init(configuration: ConvergenceConfiguration = ConvergenceConfiguration()) {
        self.configuration = configuration
        bandwidth = BandwidthEstimator(window: configuration.bandwidthWindow, smoothing: configuration.bandwidthSmoothing)
    }

    /// The bandwidth to predict with now: smoothed full windows, else the configured initial
    /// bandwidth, else the open window's rate, else the rate of everything sent so far (a
    /// lower bound: an idle guest's trickle, which is no measurement of the link but predicts
    /// its few KiB of stop-copy state on the long side, so it still switches over at once).
    public var currentBandwidth: Double? {
        if let estimate = bandwidth.estimate { return estimate }
        if let initial = configuration.initialBandwidth { return Double(initial.bytesPerSecond) }
        return bandwidth.partialRate ?? bandwidth.lowerBoundRate
    }

    /// The link's bandwidth as measured (full windows, else the open window), for reports;
    /// nil when pre-copy moved too little to measure it.
    public var measuredBandwidth: Double? {
        bandwidth.estimate ?? bandwidth.partialRate
    }

    /// The prediction for a switchover now, without recording a decision.
    public func predict(remainingDirtyBytes: UInt64, deviceStopCopyBytes: UInt64, fixedCost: Duration) -> DowntimePrediction? {
        let pending = remainingDirtyBytes + deviceStopCopyBytes
        let rate = currentBandwidth
        if pending > 0, rate == nil || rate! <= 0 { return nil }
        return DowntimePrediction(
            dirtyBytes: remainingDirtyBytes, deviceBytes: deviceStopCopyBytes, bandwidth: rate ?? 0,
            fixedCost: fixedCost, limit: configuration.downtimeLimit)
    }

    @discardableResult
    public mutating func decide(after pass: IterationMeasurement) -> ConvergenceDecision {
        bandwidth.add(bytes: pass.bytesSent, elapsed: pass.elapsed - min(pass.zeroScanTime, pass.elapsed))
        let prediction = predict(
            remainingDirtyBytes: pass.remainingDirtyBytes, deviceStopCopyBytes: pass.deviceStopCopyBytes,
            fixedCost: pass.fixedSwitchoverCost)

        if let prediction, prediction.fitsLimit {
            highDirtyPasses = 0
            return record(pass, .switchover(reason: "predicted downtime within the limit"), prediction, "")
        }

        let dirtied = pass.bytesDirtied ?? pass.remainingDirtyBytes
        let threshold = Double(pass.bytesSent) * Double(configuration.throttleTriggerThreshold) / 100
        if pass.bytesSent > 0, Double(dirtied) > threshold {
            highDirtyPasses += 1
        } else {
            highDirtyPasses = 0
        }
        let outrun = highDirtyPasses >= 2
        let exhausted = pass.iteration >= configuration.maxIterations
        guard outrun || exhausted else {
            return record(pass, .continue, prediction, "")
        }
        if outrun { highDirtyPasses = 0 }
        let why: String
        if exhausted {
            why = "not converged after \(pass.iteration) of \(configuration.maxIterations) iterations"
        } else {
            why = "the guest dirtied \(ByteCountText.human(dirtied)) while sending \(ByteCountText.human(pass.bytesSent)), "
                + "over \(configuration.throttleTriggerThreshold)% for 2 passes"
        }

        switch configuration.onNoConvergence {
        case .force:
            return record(pass, .forceSwitchover(reason: why), prediction, why)
        case .fail:
            return record(pass, .fail(reason: why), prediction, why)
        case .throttle:
            if throttlePercent >= configuration.throttleMax {
                let reason = "throttled at the maximum \(configuration.throttleMax)% and still " + why
                return record(pass, .forceSwitchover(reason: reason), prediction, reason)
            }
            throttlePercent = throttlePercent == 0
                ? configuration.throttleInitial
                : min(throttlePercent + configuration.throttleIncrement, configuration.throttleMax)
            return record(pass, .throttle(percent: throttlePercent), prediction, why)
        }
    }

    private mutating func record(
        _ pass: IterationMeasurement, _ action: ConvergenceAction, _ prediction: DowntimePrediction?, _ why: String
    ) -> ConvergenceDecision {
        let decision = ConvergenceDecision(
            iteration: pass.iteration, action: action, prediction: prediction, dirtyRate: pass.dirtyRate,
            throttlePercent: throttlePercent, explanation: why)
        decisions.append(decision)
        return decision
    }
}
