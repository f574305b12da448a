/// What the convergence policy does when pre-copy does not converge within `max-iterations`
/// or the guest dirties memory faster than the link can send it.
public enum NoConvergenceAction: String, CaseIterable, Sendable, Codable {
    /// Slow the guest down (auto-converge): 20% first, +10% per step, up to 99%; switch
    /// over anyway if it still does not converge at the maximum.
    case throttle
    /// Switch over now and accept a downtime above the limit.
    case force
    /// Give up: the source cancels the migration and the guest keeps running where it is.
    case fail
}
