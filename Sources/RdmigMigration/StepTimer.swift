import RdmigSystem

/// Named laps of a critical section, for the log line that says where the downtime went.
struct StepTimer {
    private let clock = ContinuousClock()
    private var last: ContinuousClock.Instant
    private var laps: [(String, Duration)] = []

    init() { last = clock.now }

    mutating func lap(_ name: String) {
        let now = clock.now
        laps.append((name, now - last))
        last = now
    }

    var description: String {
        laps.map { "\($0.0) \(formatFixed($0.1.milliseconds, decimals: 1)) ms" }.joined(separator: ", ")
    }
}
