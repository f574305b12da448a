/// Whether buffer pools use huge pages: the largest that fits (auto), none, or one size.
///
/// Huge pages cut TLB misses for the NIC's DMA and the CPU's copies alike (perftest offers
/// them for its buffers); without them the pool still works on 4 KiB pages, and the
/// pool says why (`BufferPool.pageSizeReason`).
public enum HugePagePolicy: String, Sendable, Equatable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case auto
    case off
    case size2MiB = "2M"
    case size1GiB = "1G"

    public init(parsing text: String) throws(MemoryConfiguration.ParseError) {
        switch text.filter({ !$0.isWhitespace }).lowercased() {
        case "auto": self = .auto
        case "off": self = .off
        case "2m", "2mib": self = .size2MiB
        case "1g", "1gib": self = .size1GiB
        default:
            throw .badValue(setting: "huge pages", value: text, hint: "use auto, off, 2M or 1G")
        }
    }

    public var description: String { rawValue }

    public init(from decoder: any Decoder) throws {
        self = try HugePagePolicy(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    /// Page sizes to try for a pool of `length` bytes, best first; 4 KiB is always the last.
    ///
    /// auto takes 1 GiB pages only for pools of whole GiBs, since a mapping is rounded up to
    /// its page size and a 64 MiB pool on a 1 GiB page would lock 960 MiB for nothing.
    public func candidates(forLength length: UInt64) -> [PageSize] {
        switch self {
        case .off: return [.base4KiB]
        case .size2MiB: return [.huge2MiB, .base4KiB]
        case .size1GiB: return [.huge1GiB, .base4KiB]
        case .auto:
            if length >= PageSize.huge1GiB.bytes && length % PageSize.huge1GiB.bytes == 0 {
                return [.huge1GiB, .huge2MiB, .base4KiB]
            }
            return [.huge2MiB, .base4KiB]
        }
    }
}
