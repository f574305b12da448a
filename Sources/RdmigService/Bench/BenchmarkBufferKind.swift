import ArgumentParser

/// Where `rdmig bench transport` puts the sender's source ring and the receiver's window.
enum BenchmarkBufferKind: String, Codable, CaseIterable, ExpressibleByArgument, Sendable {
    /// A plain aligned heap allocation: first-touch placement, base pages, not locked.
    case malloc
    /// A `BufferPool` (pinned, NUMA-bound, huge pages when available), as rdmig's data path uses.
    case pool
}
