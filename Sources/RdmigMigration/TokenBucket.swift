/// A token bucket in bytes: `rate` bytes per second accrue up to `capacity`; a writer spends
/// a page's worth per page. Time is passed in, so the logic is testable without a clock.
struct TokenBucket: Sendable, Equatable {
    private(set) var rate: Double
    private(set) var capacity: Double
    private(set) var tokens: Double = 0
    private var last: Double?

    init(rate: Double, capacity: Double) {
        self.rate = rate
        self.capacity = capacity
    }

    /// Accrues tokens for the time since the last refill (`now` in seconds, monotonic).
    mutating func refill(now: Double) {
        if let last, now > last { tokens = min(capacity, tokens + (now - last) * rate) }
        last = now
    }

    /// Forgets the time in between (after a pause or a throttle sleep): no tokens for it.
    mutating func restart(now: Double) {
        last = now
    }

    mutating func setRate(_ newRate: Double, capacity newCapacity: Double) {
        rate = newRate
        capacity = newCapacity
        tokens = min(tokens, capacity)
    }

    mutating func take(_ amount: Double) -> Bool {
        guard tokens >= amount else { return false }
        tokens -= amount
        return true
    }

    /// Seconds until `amount` tokens are there (infinity at rate 0).
    func secondsUntil(_ amount: Double) -> Double {
        if tokens >= amount { return 0 }
        return rate > 0 ? (amount - tokens) / rate : .infinity
    }
}
