/// What the source does after a pre-copy pass.
public enum ConvergenceAction: Sendable, Equatable {
    /// Run another pass.
    case `continue`
    /// The predicted downtime fits the limit: pause the guest and stop-and-copy.
    case switchover(reason: String)
    /// Throttle the guest to `percent` (auto-converge) and run another pass.
    case throttle(percent: Int)
    /// Switch over although the predicted downtime exceeds the limit.
    case forceSwitchover(reason: String)
    /// Give up: cancel the migration, the guest keeps running on the source.
    case fail(reason: String)

    public var isSwitchover: Bool {
        switch self {
        case .switchover, .forceSwitchover: return true
        default: return false
        }
    }
}
