/// Which NUMA node buffers go on: the node of the NIC (auto) or a fixed one.
public enum NodeSelection: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    case auto
    case node(Int)

    /// `auto` or a node number such as `0`.
    public init(parsing text: String) throws(MemoryConfiguration.ParseError) {
        let trimmed = text.filter { !$0.isWhitespace }.lowercased()
        if trimmed == "auto" {
            self = .auto
        } else if let node = Int(trimmed), node >= 0 {
            self = .node(node)
        } else {
            throw .badValue(setting: "node", value: text, hint: "use auto or a node number such as 0")
        }
    }

    public var description: String {
        switch self {
        case .auto: return "auto"
        case .node(let node): return String(node)
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        self = try NodeSelection(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
