/// The object tables of an InfiniBand VF's software-visible state, as the seed thesis
/// migrates them and as the mlx4 PF driver tracks them per VF (`enum mlx4_resource` in
/// torvalds/linux drivers/net/ethernet/mellanox/mlx4/mlx4.h, kept by resource_tracker.c:
/// QP, CQ, SRQ, MPT, MTT, EQ, counters, ...). MTTs are folded into the MR (its range and
/// page size) and EQs into the CQ (its EQ number); MAC/VLAN/steering rules (Ethernet) and
/// XRC domains are not modelled. The raw value is the entry type in the ib-sw stream;
/// `allCases` order is the stream's canonical order.
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
