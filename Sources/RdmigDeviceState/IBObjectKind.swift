/// The object tables of an InfiniBand VF's software-visible state, as the mlx4 resource
/// tracker keeps them per function (QPs, CQs, SRQs, MPTs/MRs, PDs, GIDs, counters; see
/// FACTS.md) and as the seed thesis migrates them. The raw value is the entry type in the
/// ib-sw stream; `allCases` order is the stream's canonical order.
public enum IBObjectKind: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case port = 0x10
    case gid = 0x11
    case protectionDomain = 0x12
    case memoryRegion = 0x13
    case completionQueue = 0x14
    case sharedReceiveQueue = 0x15
    case queuePair = 0x16
    case counters = 0x17

    /// Position in `allCases`, for per-kind arrays.
    var ordinal: Int {
        switch self {
        case .port: return 0
        case .gid: return 1
        case .protectionDomain: return 2
        case .memoryRegion: return 3
        case .completionQueue: return 4
        case .sharedReceiveQueue: return 5
        case .queuePair: return 6
        case .counters: return 7
        }
    }

    /// Encoded body size of one object of this kind (without the 8-byte entry header).
    var bodySize: Int {
        switch self {
        case .port: return IBPort.bodySize
        case .gid: return IBGidEntry.bodySize
        case .protectionDomain: return IBProtectionDomain.bodySize
        case .memoryRegion: return IBMemoryRegion.bodySize
        case .completionQueue: return IBCompletionQueue.bodySize
        case .sharedReceiveQueue: return IBSharedReceiveQueue.bodySize
        case .queuePair: return IBQueuePair.bodySize
        case .counters: return IBPortCounters.bodySize
        }
    }

    public var description: String {
        switch self {
        case .port: return "port"
        case .gid: return "gid"
        case .protectionDomain: return "pd"
        case .memoryRegion: return "mr"
        case .completionQueue: return "cq"
        case .sharedReceiveQueue: return "srq"
        case .queuePair: return "qp"
        case .counters: return "counters"
        }
    }
}
