/// The link's bandwidth as pre-copy measures it: bytes and time are pooled until a window
/// of at least `window` has passed (QEMU measures over windows of 100 ms or more,
/// migration.c BUFFER_DELAY, because shorter ones are dominated by latency and timer noise),
/// then the window's rate enters an exponentially weighted moving average. A window that
/// moved less than `minimumWindowBytes` measured round trips and loop overhead, not the
/// link (an idle guest's passes carry a few KiB of VF state and zero-page markers: as a
/// "bandwidth" that made a 5 KiB stop-and-copy look like 11 ms), so it is dropped; what
/// such passes did move still counts in `lowerBoundRate`, all bytes over all time.
public struct BandwidthEstimator: Sendable, Equatable {
    public let window: Duration
    public let smoothing: Double
    public let minimumWindowBytes: UInt64
    /// Bytes per second from full windows; nil until the first window closes.
    public private(set) var estimate: Double?
    public private(set) var windows = 0
    private var pendingBytes: UInt64 = 0
    private var pendingTime: Duration = .zero
    private var totalBytes: UInt64 = 0
    private var totalTime: Duration = .zero

    public init(window: Duration = .milliseconds(100), smoothing: Double = 0.5, minimumWindowBytes: UInt64 = 1 << 20) {
        self.window = window
        self.smoothing = smoothing
        self.minimumWindowBytes = minimumWindowBytes
    }

    public mutating func add(bytes: UInt64, elapsed: Duration) {
        // A pass that sent nothing measured the loop, not the link.
        guard elapsed > .zero, bytes > 0 else { return }
        totalBytes &+= bytes
        totalTime += elapsed
        pendingBytes &+= bytes
        pendingTime += elapsed
        guard pendingTime >= window else { return }
        defer {
            pendingBytes = 0
            pendingTime = .zero
        }
        guard pendingBytes >= minimumWindowBytes else { return }
        let sample = Double(pendingBytes) / pendingTime.seconds
        estimate = estimate.map { smoothing * sample + (1 - smoothing) * $0 } ?? sample
        windows += 1
    }

    /// The rate of the window still open (bytes per second), nil while it holds less than
    /// `minimumWindowBytes`.
    public var partialRate: Double? {
        guard pendingTime > .zero, pendingBytes >= minimumWindowBytes else { return nil }
        return Double(pendingBytes) / pendingTime.seconds
    }

    /// Everything added, over all the time it took: the link moved at least this fast, so a
    /// prediction from it errs long. Nil before any bytes.
    public var lowerBoundRate: Double? {
        guard totalTime > .zero, totalBytes > 0 else { return nil }
        return Double(totalBytes) / totalTime.seconds
    }

    /// How long the open window has run.
    public var partialTime: Duration { pendingTime }
}
