import RdmigSystem

/// Durations and rates as the policy's log lines and reports write them.
enum DurationText {
    /// "50ms", "12.5ms", "0.25ms": milliseconds, as few decimals as needed (at most 3).
    static func milliseconds(_ duration: Duration) -> String {
        let value = duration.milliseconds
        for decimals in 0...3 {
            let text = formatFixed(value, decimals: decimals)
            if let parsed = Double(text), abs(parsed - value) < 1e-9 { return text + "ms" }
        }
        return formatFixed(value, decimals: 3) + "ms"
    }

    /// "11.6 ms" with one decimal, for decision descriptions.
    static func shortMilliseconds(_ seconds: Double) -> String {
        formatFixed(seconds * 1000, decimals: 1) + " ms"
    }

    /// "1.10 GiB/s".
    static func rate(_ bytesPerSecond: Double) -> String {
        ByteCount.humanReadable(bytesPerSecond) + "/s"
    }
}
