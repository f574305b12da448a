/// A policy decision with the numbers behind it, ready for the log:
/// "iteration 4: 12.00 MiB dirty + 1.20 MiB device over 1.10 GiB/s = 11.6 ms + 3.0 ms fixed
/// <= 50.0 ms limit: switch over".
public struct ConvergenceDecision: Sendable, Equatable, CustomStringConvertible {
    public let iteration: Int
    public let action: ConvergenceAction
    /// nil when no bandwidth was known yet and there was something to send.
    public let prediction: DowntimePrediction?
    /// Bytes per second dirtied in the pass.
    public let dirtyRate: Double
    /// The throttle in force after this decision (0-99).
    public let throttlePercent: Int
    public let description: String

    init(iteration: Int, action: ConvergenceAction, prediction: DowntimePrediction?, dirtyRate: Double,
         throttlePercent: Int, explanation: String) {
        self.iteration = iteration
        self.action = action
        self.prediction = prediction
        self.dirtyRate = dirtyRate
        self.throttlePercent = throttlePercent
        let numbers = prediction?.description ?? "no bandwidth measured yet"
        let verdict: String
        switch action {
        case .continue: verdict = "continue"
        case .switchover: verdict = "switch over"
        case .throttle(let percent): verdict = "throttle the guest to \(percent)%"
        case .forceSwitchover: verdict = "force switchover"
        case .fail: verdict = "fail"
        }
        let why = explanation.isEmpty ? "" : " (\(explanation))"
        description = "iteration \(iteration): \(numbers): \(verdict)\(why)"
    }
}
