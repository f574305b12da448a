/// The link's bandwidth as pre-copy measures it: bytes and time are pooled until a window
/// of at least `window` has passed (QEMU measures over windows of 100 ms or more,
/// migration.c BUFFER_DELAY, because shorter ones are dominated by latency and timer noise),
/// then the window's rate enters an exponentially weighted moving average.
public struct BandwidthEstimator: Sendable, Equatable {
    public let window: Duration
    public let smoothing: Double
    /// Bytes per second from full windows; nil until the first window closes.
    public private(set) var estimate: Double?
    public private(set) var windows = 0
    private var pendingBytes: UInt64 = 0
    private var pendingTime: Duration = .zero

    public init(window: Duration = .milliseconds(100), smoothing: Double = 0.5) {
        self.window = window
        self.smoothing = smoothing
    }

    public mutating func add(bytes: UInt64, elapsed: Duration) {
        // A pass that sent nothing measured the loop, not the link.
        guard elapsed > .zero, bytes > 0 else { return }
        pendingBytes &+= bytes
        pendingTime += elapsed
        guard pendingTime >= window else { return }
        let sample = Double(pendingBytes) / pendingTime.seconds
        estimate = estimate.map { smoothing * sample + (1 - smoothing) * $0 } ?? sample
        windows += 1
        pendingBytes = 0
        pendingTime = .zero
    }

    /// The rate of the window still open (bytes per second), nil when it is empty.
    public var partialRate: Double? {
        guard pendingTime > .zero, pendingBytes > 0 else { return nil }
        return Double(pendingBytes) / pendingTime.seconds
    }

    /// How long the open window has run.
    public var partialTime: Duration { pendingTime }
}
