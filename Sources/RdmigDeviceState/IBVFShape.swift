/// How many objects of each kind an ib-sw VF holds. Source and destination must agree on
/// it (like two VFs of the same model): the stream header carries it and the destination
/// refuses a different one.
public struct IBVFShape: Equatable, Sendable, CustomStringConvertible {
    public var ports: Int
    public var gidsPerPort: Int
    public var protectionDomains: Int
    public var memoryRegions: Int
    public var completionQueues: Int
    public var sharedReceiveQueues: Int
    public var queuePairs: Int

    public init(
        ports: Int, gidsPerPort: Int, protectionDomains: Int, memoryRegions: Int, completionQueues: Int,
        sharedReceiveQueues: Int, queuePairs: Int
    ) {
        self.ports = ports
        self.gidsPerPort = gidsPerPort
        self.protectionDomains = protectionDomains
        self.memoryRegions = memoryRegions
        self.completionQueues = completionQueues
        self.sharedReceiveQueues = sharedReceiveQueues
        self.queuePairs = queuePairs
    }

    public func count(of kind: IBObjectKind) -> Int {
        switch kind {
        case .port: return ports
        case .gid: return ports * gidsPerPort
        case .protectionDomain: return protectionDomains
        case .memoryRegion: return memoryRegions
        case .completionQueue: return completionQueues
        case .sharedReceiveQueue: return sharedReceiveQueues
        case .queuePair: return queuePairs
        case .counters: return ports
        }
    }

    public var objectCount: Int { IBObjectKind.allCases.reduce(0) { $0 + count(of: $1) } }

    /// Bytes of all object entries (entry headers included), without the stream header and end.
    var objectBytes: Int {
        IBObjectKind.allCases.reduce(0) { $0 + count(of: $1) * (IBStreamFormat.entryHeaderSize + $1.bodySize) }
    }

    public var description: String {
        "\(ports) port(s) x \(gidsPerPort) GIDs, \(protectionDomains) PDs, \(memoryRegions) MRs, "
            + "\(completionQueues) CQs, \(sharedReceiveQueues) SRQs, \(queuePairs) QPs"
    }
}
