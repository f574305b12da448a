/// Which pages of the working set the synthetic guest's writers choose.
public enum WritePattern: String, CaseIterable, Sendable, Codable {
    /// Every page of the working set equally likely.
    case uniform
    /// Most writes go to a small hot part of the set (80% of writes to the first 20% of the
    /// set by default), like a guest whose heap has a hot core: pre-copy resends the hot pages
    /// every pass and converges on the cold ones.
    case hotCold = "hot-cold"
    /// Each writer walks its share of the set in order and wraps, like a guest streaming
    /// through a buffer: the worst case for pre-copy, every page is dirtied again per lap.
    case sequential
}
