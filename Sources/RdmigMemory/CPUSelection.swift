/// Which CPUs the polling and copy threads run on: CPUs of the NIC's node (auto) or a list.
public enum CPUSelection: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    case auto
    case cpus([Int32])

    /// `auto` or a CPU list such as `2-3` or `0,2,4`.
    public init(parsing text: String) throws(MemoryConfiguration.ParseError) {
        let trimmed = text.filter { !$0.isWhitespace }.lowercased()
        if trimmed == "auto" {
            self = .auto
            return
        }
        guard let cpus = try? CPUList.parse(trimmed), !cpus.isEmpty else {
            throw .badValue(setting: "thread CPUs", value: text, hint: "use auto or a CPU list such as 2-3 or 0,2,4")
        }
        self = .cpus(cpus)
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .cpus(let cpus): return CPUList.format(cpus)
        }
    }

    public init(from decoder: any Decoder) throws {
        self = try CPUSelection(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
