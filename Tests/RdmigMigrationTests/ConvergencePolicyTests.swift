import Testing
import RdmigSystem
@testable import RdmigMigration

@Suite struct ConvergencePolicyTests {
    static let mib: UInt64 = 1 << 20
    static let gib: UInt64 = 1 << 30

    func policy(_ change: (inout ConvergenceConfiguration) -> Void = { _ in }) -> ConvergencePolicy {
        var configuration = ConvergenceConfiguration()
        change(&configuration)
        return ConvergencePolicy(configuration: configuration)
    }

    /// A pass that sent `sent` bytes at 1 GiB/s and left `remaining` dirty.
    func pass(_ iteration: Int, sent: UInt64, remaining: UInt64, device: UInt64 = 0, fixed: Duration = .zero,
              rate: Double = Double(1 << 30)) -> IterationMeasurement {
        IterationMeasurement(
            iteration: iteration, bytesSent: sent, elapsed: .nanoseconds(Int64(Double(sent) / rate * 1e9)),
            remainingDirtyBytes: remaining, deviceStopCopyBytes: device, fixedSwitchoverCost: fixed)
    }

    @Test func switchesOverWhenThePredictedDowntimeFitsTheLimit() throws {
        var policy = policy()
        // 1 GiB in 1 s: a full window, bandwidth 1 GiB/s. 12 MiB + 1 MiB over 1 GiB/s = 12.7 ms, + 3 ms.
        let decision = policy.decide(after: pass(1, sent: Self.gib, remaining: 12 * Self.mib, device: Self.mib,
                                                 fixed: .milliseconds(3)))
        guard case .switchover = decision.action else {
            Issue.record("expected a switchover, got \(decision)")
            return
        }
        let prediction = try #require(decision.prediction)
        #expect(abs(prediction.transferSeconds - 13.0 / 1024) < 1e-9)
        #expect(abs(prediction.totalSeconds - (13.0 / 1024 + 0.003)) < 1e-9)
        #expect(decision.description
            == "iteration 1: 12.00 MiB dirty + 1.00 MiB device over 1.00 GiB/s = 12.7 ms + 3.0 ms fixed <= 50.0 ms limit: switch over")
    }

    @Test func continuesWhileThePredictionExceedsTheLimit() {
        var policy = policy()
        let decision = policy.decide(after: pass(1, sent: Self.gib, remaining: 100 * Self.mib))
        #expect(decision.action == .continue)
        #expect(decision.description.contains("97.7 ms"))
        #expect(decision.description.contains("> 50.0 ms limit: continue"))
    }

    @Test func deviceStateAndFixedCostsCountAgainstTheLimit() {
        // 40 MiB alone fits (39 ms); with 8 MiB of VF state it does not (46.9 + 5 ms).
        var withoutDevice = policy()
        #expect(withoutDevice.decide(after: pass(1, sent: Self.gib, remaining: 40 * Self.mib)).action.isSwitchover)
        var withDevice = policy()
        let decision = withDevice.decide(after: pass(1, sent: Self.gib, remaining: 40 * Self.mib, device: 8 * Self.mib,
                                                     fixed: .milliseconds(5)))
        #expect(decision.action == .continue)
    }

    @Test func anIdleGuestSwitchesOverWithoutABandwidthMeasurement() {
        var policy = policy()
        // A tiny pass (2 ms) gives no full window, but nothing is left to send.
        let decision = policy.decide(after: pass(1, sent: 2 * Self.mib, remaining: 0, fixed: .milliseconds(1)))
        #expect(decision.action.isSwitchover)
    }

    @Test func usesThePartialWindowOrTheInitialBandwidthBeforeTheFirstFullWindow() throws {
        var partial = policy()
        let first = partial.decide(after: pass(1, sent: 32 * Self.mib, remaining: 4 * Self.mib))
        #expect(partial.bandwidth.estimate == nil)
        #expect(first.action.isSwitchover, "4 MiB at the partial window's 1 GiB/s is 3.9 ms")
        var configured = policy { $0.initialBandwidth = ByteRate(bytesPerSecond: 10 * Self.mib) }
        let second = configured.decide(after: pass(1, sent: 32 * Self.mib, remaining: 4 * Self.mib))
        #expect(second.action == .continue, "4 MiB at the configured 10 MiB/s is 400 ms")
        #expect(try #require(second.prediction).bandwidth == Double(10 * Self.mib))
    }

    func close(_ value: Double?, _ expected: UInt64) -> Bool {
        guard let value else { return false }
        return abs(value - Double(expected)) <= Double(expected) * 1e-9
    }

    @Test func bandwidthIsMeasuredOverWindowsAndSmoothed() {
        var estimator = BandwidthEstimator(window: .milliseconds(100), smoothing: 0.5)
        estimator.add(bytes: 10 * Self.mib, elapsed: .milliseconds(40))
        #expect(estimator.estimate == nil)
        #expect(close(estimator.partialRate, 250 * Self.mib))
        estimator.add(bytes: 15 * Self.mib, elapsed: .milliseconds(60))
        #expect(close(estimator.estimate, 250 * Self.mib))  // 25 MiB in 100 ms
        estimator.add(bytes: 50 * Self.mib, elapsed: .milliseconds(100))
        #expect(close(estimator.estimate, 375 * Self.mib))  // average of 250 and 500
        estimator.add(bytes: 0, elapsed: .seconds(5))
        #expect(close(estimator.estimate, 375 * Self.mib), "an empty pass says nothing about the link")
        #expect(estimator.windows == 2)
    }

    @Test func aWindowThatMovedTooLittleSaysNothingAboutTheLink() {
        var estimator = BandwidthEstimator(window: .milliseconds(100), smoothing: 0.5, minimumWindowBytes: Self.mib)
        // An idle guest's pass: a few KiB of VF state in 150 ms.
        estimator.add(bytes: 6 << 10, elapsed: .milliseconds(150))
        #expect(estimator.estimate == nil)
        #expect(estimator.partialRate == nil)
        #expect(estimator.windows == 0)
        #expect(close(estimator.lowerBoundRate, 40960))  // 6 KiB in 150 ms
        estimator.add(bytes: 512 << 10, elapsed: .milliseconds(40))
        #expect(estimator.partialRate == nil, "half a MiB open: not yet a measurement")
        estimator.add(bytes: 2 * Self.mib, elapsed: .milliseconds(60))
        #expect(close(estimator.estimate, 25 * Self.mib))  // 2.5 MiB in 100 ms
        #expect(estimator.windows == 1)
    }

    @Test func anIdleGuestWithVFStateSwitchesOverOnTheLowerBoundRate() throws {
        var policy = policy()
        // The first pass of an idle guest: 100 KiB of VF pre-copy state in 1.2 s, 1.1 s of it
        // scanning zero pages; 5 KiB of stop-copy state left. No window measured the link.
        let decision = policy.decide(after: IterationMeasurement(
            iteration: 1, bytesSent: 100 << 10, elapsed: .milliseconds(1200), zeroScanTime: .milliseconds(1100), remainingDirtyBytes: 0,
            deviceStopCopyBytes: 5 << 10, fixedSwitchoverCost: .milliseconds(2)))
        guard case .switchover = decision.action else {
            Issue.record("expected a switchover, got \(decision)")
            return
        }
        #expect(policy.measuredBandwidth == nil)
        #expect(try #require(decision.prediction).totalSeconds < 0.1)
    }

    @Test func timeSpentScanningZeroPagesIsNotLinkTime() throws {
        var policy = policy()
        // 100 MiB on the wire in 1 s, 900 ms of which went to scanning zero pages.
        let decision = policy.decide(after: IterationMeasurement(
            iteration: 1, bytesSent: 100 * Self.mib, elapsed: .seconds(1), zeroScanTime: .milliseconds(900),
            remainingDirtyBytes: 100 * Self.mib))
        #expect(close(try #require(decision.prediction).bandwidth, 1000 * Self.mib))
        #expect(close(policy.currentBandwidth, 1000 * Self.mib))
    }

    @Test func aDirtyRateAboveTheThresholdTwiceThrottlesWithQEMUsSteps() {
        var policy = policy()
        // Each pass sends 1 GiB and leaves 600 MiB dirty: 58% > 50%.
        #expect(policy.decide(after: pass(1, sent: Self.gib, remaining: 600 * Self.mib)).action == .continue)
        #expect(policy.decide(after: pass(2, sent: Self.gib, remaining: 600 * Self.mib)).action == .throttle(percent: 20))
        #expect(policy.decide(after: pass(3, sent: Self.gib, remaining: 600 * Self.mib)).action == .continue)
        #expect(policy.decide(after: pass(4, sent: Self.gib, remaining: 600 * Self.mib)).action == .throttle(percent: 30))
        #expect(policy.throttlePercent == 30)
    }

    @Test func aQuietPassResetsTheHighDirtyCount() {
        var policy = policy()
        #expect(policy.decide(after: pass(1, sent: Self.gib, remaining: 600 * Self.mib)).action == .continue)
        #expect(policy.decide(after: pass(2, sent: Self.gib, remaining: 100 * Self.mib)).action == .continue)
        #expect(policy.decide(after: pass(3, sent: Self.gib, remaining: 600 * Self.mib)).action == .continue)
    }

    @Test func throttleClimbsToTheMaximumThenForces() {
        var policy = policy { $0.maxIterations = 1 }
        var percents: [Int] = []
        var last: ConvergenceAction = .continue
        for iteration in 1...12 {
            last = policy.decide(after: pass(iteration, sent: Self.gib, remaining: 100 * Self.mib)).action
            if case .throttle(let percent) = last { percents.append(percent) } else { break }
        }
        #expect(percents == [20, 30, 40, 50, 60, 70, 80, 90, 99])
        guard case .forceSwitchover(let reason) = last else {
            Issue.record("expected a forced switchover, got \(last)")
            return
        }
        #expect(reason.contains("maximum 99%"))
    }

    @Test func forceModeSwitchesOverAfterMaxIterations() {
        var policy = policy {
            $0.maxIterations = 3
            $0.onNoConvergence = .force
        }
        #expect(policy.decide(after: pass(1, sent: Self.gib, remaining: 100 * Self.mib)).action == .continue)
        #expect(policy.decide(after: pass(2, sent: Self.gib, remaining: 100 * Self.mib)).action == .continue)
        let decision = policy.decide(after: pass(3, sent: Self.gib, remaining: 100 * Self.mib))
        #expect(decision.action == .forceSwitchover(reason: "not converged after 3 of 3 iterations"))
        #expect(decision.description.hasSuffix("force switchover (not converged after 3 of 3 iterations)"))
    }

    @Test func failModeGivesUpWhenTheDirtyRateOutrunsTheLink() {
        var policy = policy { $0.onNoConvergence = .fail }
        #expect(policy.decide(after: pass(1, sent: Self.gib, remaining: 2 * Self.gib)).action == .continue)
        let decision = policy.decide(after: pass(2, sent: Self.gib, remaining: 2 * Self.gib))
        guard case .fail(let reason) = decision.action else {
            Issue.record("expected fail, got \(decision)")
            return
        }
        #expect(reason.contains("2.00 GiB"))
        #expect(reason.contains("over 50%"))
    }

    @Test func convergenceWinsOverTheIterationLimit() {
        var policy = policy {
            $0.maxIterations = 1
            $0.onNoConvergence = .fail
        }
        #expect(policy.decide(after: pass(1, sent: Self.gib, remaining: Self.mib)).action.isSwitchover)
        #expect(policy.decisions.count == 1)
    }

    @Test func aLowerLimitNeedsMorePasses() {
        var strict = policy { $0.downtimeLimit = .milliseconds(5) }
        #expect(strict.decide(after: pass(1, sent: Self.gib, remaining: 10 * Self.mib)).action == .continue)
        #expect(strict.decide(after: pass(2, sent: 10 * Self.mib, remaining: 2 * Self.mib)).action.isSwitchover)
    }

    @Test func dirtyRateIsBytesDirtiedOverThePass() {
        let measurement = IterationMeasurement(
            iteration: 1, bytesSent: Self.gib, elapsed: .milliseconds(500), remainingDirtyBytes: 128 * Self.mib)
        #expect(measurement.dirtyRate == Double(256 * Self.mib))
        var explicit = measurement
        explicit.bytesDirtied = 64 * Self.mib
        #expect(explicit.dirtyRate == Double(128 * Self.mib))
    }
}
