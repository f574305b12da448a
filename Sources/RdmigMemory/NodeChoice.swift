/// The node chosen for buffers and threads, and why (for logs and `rdmig probe`).
public struct NodeChoice: Codable, Sendable, Equatable, CustomStringConvertible {
    public var node: Int
    public var reason: String

    public init(node: Int, reason: String) {
        self.node = node
        self.reason = reason
    }

    public var description: String { "node \(node) (\(reason))" }
}
