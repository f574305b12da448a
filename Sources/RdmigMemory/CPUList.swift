/// The Linux CPU list format, as in sysfs `cpulist` files, `taskset -c` and `numactl -C`:
/// `0-3,8,10-11`. Also used for node lists (`/sys/devices/system/node/online`).
public enum CPUList {
    public struct ParseError: Error, CustomStringConvertible, Equatable, Sendable {
        public let text: String
        public var description: String {
            "'\(text)' is not a CPU list: write numbers and ranges such as 0-3,8"
        }
    }

    /// Sorted, without duplicates. An empty or blank text is an empty list (sysfs writes an
    /// empty line for a node without CPUs).
    public static func parse(_ text: String) throws(ParseError) -> [Int32] {
        var result: [Int32] = []
        for rawPart in text.split(separator: ",", omittingEmptySubsequences: false) {
            let part = rawPart.filter { !$0.isWhitespace }
            if part.isEmpty {
                if text.allSatisfy(\.isWhitespace) { return [] }
                throw ParseError(text: text)
            }
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2,
                  let low = Int32(bounds[0]), low >= 0,
                  let high = bounds.count == 2 ? Int32(bounds[1]) : low, high >= low,
                  high < 1 << 20
            else { throw ParseError(text: text) }
            result.append(contentsOf: low...high)
        }
        return Array(Set(result)).sorted()
    }

    /// The shortest list form: `[0, 1, 2, 3, 8]` gives `0-3,8`; empty gives `none`.
    public static func format<C: Collection>(_ cpus: C) -> String where C.Element: BinaryInteger {
        let sorted = Array(Set(cpus.map { Int($0) })).sorted()
        guard var start = sorted.first else { return "none" }
        var parts: [String] = []
        var previous = start
        for cpu in sorted.dropFirst() {
            if cpu == previous + 1 {
                previous = cpu
                continue
            }
            parts.append(start == previous ? "\(start)" : "\(start)-\(previous)")
            start = cpu
            previous = cpu
        }
        parts.append(start == previous ? "\(start)" : "\(start)-\(previous)")
        return parts.joined(separator: ",")
    }
}
