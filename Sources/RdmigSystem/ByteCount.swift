/// A number of bytes as people write it on a command line or in a config file:
/// `4096`, `64KiB`, `1GiB`, `1.5GB`. Binary (KiB, MiB, GiB, TiB) and decimal (KB, MB, GB, TB)
/// units; a bare `K`/`M`/`G`/`T` means the binary unit, as QEMU and numactl read it.
public struct ByteCount: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var bytes: UInt64

    public init(_ bytes: UInt64) { self.bytes = bytes }
    public static func kibibytes(_ n: UInt64) -> ByteCount { ByteCount(n << 10) }
    public static func mebibytes(_ n: UInt64) -> ByteCount { ByteCount(n << 20) }
    public static func gibibytes(_ n: UInt64) -> ByteCount { ByteCount(n << 30) }

    public static func < (a: ByteCount, b: ByteCount) -> Bool { a.bytes < b.bytes }

    public enum ParseError: Error, CustomStringConvertible, Equatable, Sendable {
        case empty
        case notANumber(String)
        case unknownUnit(String, in: String)
        case tooLarge(String)

        public var description: String {
            switch self {
            case .empty: return "empty size: write a number with an optional unit, e.g. 64KiB or 1GiB"
            case .notANumber(let text): return "'\(text)' is not a size: write a number with an optional unit, e.g. 64KiB or 1GiB"
            case .unknownUnit(let unit, let text): return "unknown unit '\(unit)' in '\(text)': use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)"
            case .tooLarge(let text): return "size '\(text)' does not fit in 64 bits"
            }
        }
    }

    static let units: [(String, Double)] = [
        ("", 1), ("B", 1),
        ("K", 1024), ("KIB", 1024), ("KB", 1000),
        ("M", Double(1 << 20)), ("MIB", Double(1 << 20)), ("MB", 1e6),
        ("G", Double(1 << 30)), ("GIB", Double(1 << 30)), ("GB", 1e9),
        ("T", Double(UInt64(1) << 40)), ("TIB", Double(UInt64(1) << 40)), ("TB", 1e12),
    ]

    public init(parsing text: String) throws(ParseError) {
        let trimmed = text.trimmingSpaces()
        guard !trimmed.isEmpty else { throw .empty }
        var numberEnd = trimmed.startIndex
        while numberEnd < trimmed.endIndex, trimmed[numberEnd].isNumber || trimmed[numberEnd] == "." {
            numberEnd = trimmed.index(after: numberEnd)
        }
        let numberText = String(trimmed[..<numberEnd])
        let unitText = String(trimmed[numberEnd...]).trimmingSpaces()
        guard !numberText.isEmpty, let value = Double(numberText), value >= 0 else {
            throw .notANumber(text)
        }
        guard let multiplier = ByteCount.units.first(where: { $0.0 == unitText.uppercased() })?.1 else {
            throw .unknownUnit(unitText, in: text)
        }
        let product = value * multiplier
        guard product < 1.8e19 else { throw .tooLarge(text) }
        if let exact = UInt64(numberText), multiplier == multiplier.rounded(), multiplier >= 1 {
            let (result, overflow) = exact.multipliedReportingOverflow(by: UInt64(multiplier))
            guard !overflow else { throw .tooLarge(text) }
            self.bytes = result
        } else {
            self.bytes = UInt64(product.rounded())
        }
    }

    /// The shortest exact binary form, e.g. "64KiB", "1GiB", "1536B".
    public var description: String {
        let suffixes = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = bytes
        var index = 0
        while index < suffixes.count - 1, value != 0, value % 1024 == 0 {
            value /= 1024
            index += 1
        }
        return "\(value)\(suffixes[index])"
    }

    /// A rounded form for reports, e.g. "1.50 GiB".
    public var humanReadable: String { ByteCount.humanReadable(Double(bytes)) }

    public static func humanReadable(_ bytes: Double) -> String {
        let suffixes = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = bytes
        var index = 0
        while index < suffixes.count - 1, value >= 1024 {
            value /= 1024
            index += 1
        }
        return index == 0 ? "\(Int(value)) B" : formatFixed(value, decimals: 2) + " " + suffixes[index]
    }
}

/// A rate such as `256MiB/s` (the `/s` is optional).
public struct ByteRate: Hashable, Sendable, CustomStringConvertible {
    public var bytesPerSecond: UInt64
    public init(bytesPerSecond: UInt64) { self.bytesPerSecond = bytesPerSecond }

    public init(parsing text: String) throws(ByteCount.ParseError) {
        var body = text.trimmingSpaces()
        if body.lowercased().hasSuffix("/s") { body = String(body.dropLast(2)) }
        bytesPerSecond = try ByteCount(parsing: body).bytes
    }

    public var description: String { "\(ByteCount(bytesPerSecond))/s" }
}

/// Durations as written in configs: `50ms`, `2s`, `1.5s`, `300us`, `1m`.
public enum DurationParser {
    public enum ParseError: Error, CustomStringConvertible, Equatable, Sendable {
        case invalid(String)
        public var description: String {
            switch self {
            case .invalid(let text):
                return "'\(text)' is not a duration: write a number with a unit, e.g. 50ms, 2s, 300us, 1m"
            }
        }
    }

    public static func parse(_ text: String) throws(ParseError) -> Duration {
        let trimmed = text.trimmingSpaces().lowercased()
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where trimmed.hasSuffix(suffix) {
            let number = String(trimmed.dropLast(suffix.count)).trimmingSpaces()
            // "ms" also ends in "s": only accept when the remainder is a plain number.
            guard let value = Double(number), value >= 0, value.isFinite else { continue }
            let nanoseconds = value * scale * 1e9
            return .nanoseconds(Int64(nanoseconds.rounded()))
        }
        throw .invalid(text)
    }
}

extension Duration {
    /// Seconds as a Double, for rates and reports.
    public var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) * 1e-18
    }

    public var milliseconds: Double { seconds * 1000 }
}

extension String {
    func trimmingSpaces() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }
}

/// Fixed-point formatting without Foundation (reports run on every platform the same way).
public func formatFixed(_ value: Double, decimals: Int) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let negative = value < 0
    let scaled = (abs(value) * scale).rounded()
    // From 2^64 on the integer part does not fit a UInt64 (converting trapped: QEMU's
    // `mbps` reached here from a query-migrate reply, found by the qmp-message fuzz target),
    // and a Double has no exact fraction digits there anyway: Swift's shortest form instead.
    guard scaled < 18_446_744_073_709_551_616.0 else { return "\(value)" }
    let integerPart = UInt64(scaled / scale)
    // Rounding in the division can put the integer part a hair above `scaled`.
    var fraction = UInt64(min(max(0, scaled - Double(integerPart) * scale), scale - 1))
    var text = negative ? "-\(integerPart)" : "\(integerPart)"
    if decimals > 0 {
        var digits = ""
        for _ in 0..<decimals {
            digits = String(fraction % 10) + digits
            fraction /= 10
        }
        text += "." + digits
    }
    return text
}
