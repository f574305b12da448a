/// The software-visible state of an InfiniBand VF: its object tables. A value type, so a
/// snapshot is a copy; source and destination compare snapshots object by object.
public struct IBVFState: Equatable, Sendable {
    public private(set) var shape: IBVFShape
    public var ports: [IBPort]
    public var gids: [IBGidEntry]
    public var protectionDomains: [IBProtectionDomain]
    public var memoryRegions: [IBMemoryRegion]
    public var completionQueues: [IBCompletionQueue]
    public var sharedReceiveQueues: [IBSharedReceiveQueue]
    public var queuePairs: [IBQueuePair]
    public var counters: [IBPortCounters]

    // Handle bases: a VF's handles do not start at 0 (mlx4 reserves the low QPNs for
    // special QPs and firmware), which also keeps a zeroed slot distinguishable.
    static let pdnBase: UInt32 = 0x1
    static let mptBase: UInt32 = 0x100
    static let cqnBase: UInt32 = 0x80
    static let srqnBase: UInt32 = 0x40
    static let qpnBase: UInt32 = 0x200

    /// Tables of the given shape holding empty objects: what RESUMING starts from.
    public init(zeroed shape: IBVFShape) {
        self.shape = shape
        ports = Array(repeating: .empty, count: shape.count(of: .port))
        gids = Array(repeating: .empty, count: shape.count(of: .gid))
        protectionDomains = Array(repeating: .empty, count: shape.count(of: .protectionDomain))
        memoryRegions = Array(repeating: .empty, count: shape.count(of: .memoryRegion))
        completionQueues = Array(repeating: .empty, count: shape.count(of: .completionQueue))
        sharedReceiveQueues = Array(repeating: .empty, count: shape.count(of: .sharedReceiveQueue))
        queuePairs = Array(repeating: .empty, count: shape.count(of: .queuePair))
        counters = Array(repeating: .empty, count: shape.count(of: .counters))
    }

    /// A VF as a running guest would have set it up, reproducibly from the seed: ports up,
    /// MRs registered, most QPs connected (RTS) to peers.
    public init(populating configuration: IBVFConfiguration) {
        let shape = configuration.shape
        self.init(zeroed: shape)
        var rng = SplitMix64(seed: configuration.seed)
        let portGUIDBase: UInt64 = 0x0002_C903_0000_0000 | (rng.next() & 0xFFFF_FFF0)
        for index in 0..<shape.ports {
            let number = UInt8(index + 1)
            ports[index] = IBPort(
                portNumber: number, state: .active, lid: UInt16(1 + rng.below(0xBFFE)), smLid: 1, lmc: 0,
                activeMTU: .mtu4096, pkey: 0xFFFF, gidTableLength: UInt8(shape.gidsPerPort))
            counters[index] = IBPortCounters(
                port: number, transmitData: rng.next() >> 20, receiveData: rng.next() >> 20,
                transmitPackets: rng.next() >> 30, receivePackets: rng.next() >> 30, symbolErrors: 0, linkDowned: 0)
            for gidIndex in 0..<shape.gidsPerPort {
                // GID 0 is the link-local fe80:: GID built from the port GUID; the rest model
                // alias GIDs a guest added (RoCE-style addresses).
                let gid = gidIndex == 0
                    ? IBGid(subnetPrefix: 0xFE80_0000_0000_0000, interfaceID: portGUIDBase + UInt64(index))
                    : IBGid(subnetPrefix: 0xFD00_0000_0000_0000 | (rng.next() >> 16), interfaceID: rng.next())
                gids[index * shape.gidsPerPort + gidIndex] = IBGidEntry(
                    port: number, index: UInt8(gidIndex), gid: gid)
            }
        }
        for index in 0..<shape.protectionDomains {
            protectionDomains[index] = IBProtectionDomain(pdn: IBVFState.pdnBase + UInt32(index))
        }
        for index in 0..<shape.memoryRegions {
            let access: UInt32 = [0x1, 0x7, 0x3, 0xF][rng.below(4)]
            let key = ((IBVFState.mptBase + UInt32(index)) << 8) | UInt32(rng.below(256))
            let pageShift: UInt8 = rng.below(8) == 0 ? 21 : 12
            memoryRegions[index] = IBMemoryRegion(
                lkey: key, rkey: access & 0x6 != 0 ? key : 0,
                pdn: IBVFState.pdnBase + UInt32(index % shape.protectionDomains), access: access,
                address: 0x7F00_0000_0000 + (UInt64(rng.below(1 << 24)) << pageShift),
                length: UInt64(1 + rng.below(256)) << pageShift, pageShift: pageShift)
        }
        for index in 0..<shape.completionQueues {
            let entries = UInt32(256) << UInt32(rng.below(5))
            completionQueues[index] = IBCompletionQueue(
                cqn: IBVFState.cqnBase + UInt32(index), entries: entries, consumerIndex: rng.u32(),
                eqn: UInt32(index % 4), armed: rng.below(2) == 0)
        }
        for index in 0..<shape.sharedReceiveQueues {
            sharedReceiveQueues[index] = IBSharedReceiveQueue(
                srqn: IBVFState.srqnBase + UInt32(index),
                pdn: IBVFState.pdnBase + UInt32(index % shape.protectionDomains), maxWR: 1024,
                maxSGE: UInt32(1 + rng.below(4)), limit: UInt32(rng.below(64)), wqeCounter: UInt16(truncatingIfNeeded: rng.next()))
        }
        for index in 0..<shape.queuePairs {
            queuePairs[index] = IBVFState.makeQueuePair(index: index, shape: shape, rng: &rng)
        }
    }

    static func makeQueuePair(index: Int, shape: IBVFShape, rng: inout SplitMix64) -> IBQueuePair {
        let datagram = rng.below(10) == 0
        let cq = cqnBase + UInt32((index / 2) % shape.completionQueues)
        let useSRQ = shape.sharedReceiveQueues > 0 && index % 2 == 0
        let states: [IBQueuePairState] = [.readyToSend, .readyToSend, .readyToSend, .readyToSend, .readyToReceive, .initialized]
        var qp = IBQueuePair(
            qpn: qpnBase + UInt32(index), type: datagram ? .unreliableDatagram : .reliableConnected,
            state: states[rng.below(states.count)], port: UInt8(1 + index % shape.ports), serviceLevel: UInt8(rng.below(4)),
            pdn: pdnBase + UInt32(index % shape.protectionDomains), sendCQN: cq, receiveCQN: cq,
            srqn: useSRQ ? srqnBase + UInt32((index / 2) % shape.sharedReceiveQueues) : IBQueuePair.noSRQ,
            pkeyIndex: 0, destinationLID: 0, qkey: 0, sendPSN: rng.u32() & IBQueuePair.psnMask,
            receivePSN: rng.u32() & IBQueuePair.psnMask, destinationQPN: 0, destinationGID: .zero, sourceGIDIndex: 0,
            pathMTU: .mtu4096, timeout: 14, retryCount: 7, rnrRetry: 7, minRNRTimer: 12, maxReadAtomic: 4,
            maxDestinationReadAtomic: 4, accessFlags: 0x7, sendHead: rng.u32() & 0xFFFF, receiveHead: rng.u32() & 0xFFFF)
        if datagram {
            // UD QPs have no connection: the address travels in each work request's AH.
            qp.qkey = 0x1111_1111
            qp.accessFlags = 0
        } else {
            connect(&qp, rng: &rng)
        }
        return qp
    }

    /// Gives a connected QP a (new) peer: what INIT -> RTR sets.
    static func connect(_ qp: inout IBQueuePair, rng: inout SplitMix64) {
        qp.destinationQPN = UInt32(0x200 + rng.below(0x00FF_0000))
        qp.destinationLID = UInt16(1 + rng.below(0xBFFE))
        qp.destinationGID = IBGid(subnetPrefix: 0xFE80_0000_0000_0000, interfaceID: 0x0002_C903_0000_0000 | (rng.next() & 0xFFFF_FFFF))
        qp.receivePSN = rng.u32() & IBQueuePair.psnMask
        qp.pathMTU = rng.below(4) == 0 ? .mtu2048 : .mtu4096
    }

    // MARK: Entries

    /// Writes object `index` of `kind` as a stream entry (header and body).
    func encodeEntry(_ kind: IBObjectKind, _ index: Int, into writer: inout ByteWriter) {
        IBStreamFormat.writeEntryHeader(type: kind.rawValue, bodyLength: kind.bodySize, index: UInt32(index), into: &writer)
        switch kind {
        case .port: ports[index].encode(into: &writer)
        case .gid: gids[index].encode(into: &writer)
        case .protectionDomain: protectionDomains[index].encode(into: &writer)
        case .memoryRegion: memoryRegions[index].encode(into: &writer)
        case .completionQueue: completionQueues[index].encode(into: &writer)
        case .sharedReceiveQueue: sharedReceiveQueues[index].encode(into: &writer)
        case .queuePair: queuePairs[index].encode(into: &writer)
        case .counters: counters[index].encode(into: &writer)
        }
    }

    /// Replaces object `index` of `kind` with the one encoded in `body`.
    mutating func decodeObject(_ kind: IBObjectKind, _ index: Int, from body: UnsafeRawBufferPointer) throws(IBFieldError) {
        var reader = ByteReader(body)
        switch kind {
        case .port: ports[index] = try IBPort(decoding: &reader)
        case .gid: gids[index] = try IBGidEntry(decoding: &reader)
        case .protectionDomain: protectionDomains[index] = try IBProtectionDomain(decoding: &reader)
        case .memoryRegion: memoryRegions[index] = try IBMemoryRegion(decoding: &reader)
        case .completionQueue: completionQueues[index] = try IBCompletionQueue(decoding: &reader)
        case .sharedReceiveQueue: sharedReceiveQueues[index] = try IBSharedReceiveQueue(decoding: &reader)
        case .queuePair: queuePairs[index] = try IBQueuePair(decoding: &reader)
        case .counters: counters[index] = try IBPortCounters(decoding: &reader)
        }
    }

    /// Writes the canonical stream of this state (stream header, then every object in table
    /// order) in pieces of at most 64 KiB to `sink`.
    func serialize(_ sink: (UnsafeRawBufferPointer) -> Void) {
        let scratchSize = 64 << 10
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: scratchSize, alignment: 8)
        defer { scratch.deallocate() }
        var writer = ByteWriter(scratch)
        IBStreamFormat.writeStreamHeader(shape, into: &writer)
        for kind in IBObjectKind.allCases {
            let entrySize = IBStreamFormat.entrySize(kind)
            for index in 0..<shape.count(of: kind) {
                if writer.remaining < entrySize {
                    sink(UnsafeRawBufferPointer(rebasing: scratch[0..<writer.position]))
                    writer = ByteWriter(scratch)
                }
                encodeEntry(kind, index, into: &writer)
            }
        }
        sink(UnsafeRawBufferPointer(rebasing: scratch[0..<writer.position]))
    }

    /// Digest of the canonical stream: equal digests mean equal tables.
    public func digest() -> DeviceStateDigest {
        var accumulator = DeviceStateDigest.Accumulator()
        serialize { accumulator.add($0) }
        accumulator.countObjects(shape.objectCount)
        return accumulator.digest
    }

    /// How messages name object `index` of `kind`.
    func label(_ kind: IBObjectKind, _ index: Int) -> String {
        switch kind {
        case .port: return ports[index].label
        case .gid: return gids[index].label
        case .protectionDomain: return protectionDomains[index].label
        case .memoryRegion: return memoryRegions[index].label
        case .completionQueue: return completionQueues[index].label
        case .sharedReceiveQueue: return sharedReceiveQueues[index].label
        case .queuePair: return queuePairs[index].label
        case .counters: return counters[index].label
        }
    }

    // MARK: Comparison

    /// The first differing objects (at most `limit`), each as "<object>: <field> <mine> !=
    /// <theirs>", e.g. "qp 0x2a2: sendPSN 1234 != 1240". Objects are named by `other`'s
    /// handles (the reference, usually the source). Empty when the states are equal.
    public func difference(from other: IBVFState, limit: Int = 10) -> [String] {
        guard shape == other.shape else { return ["shape: \(shape) != \(other.shape)"] }
        var lines: [String] = []
        IBVFState.compare(ports, other.ports, into: &lines, limit: limit)
        IBVFState.compare(gids, other.gids, into: &lines, limit: limit)
        IBVFState.compare(protectionDomains, other.protectionDomains, into: &lines, limit: limit)
        IBVFState.compare(memoryRegions, other.memoryRegions, into: &lines, limit: limit)
        IBVFState.compare(completionQueues, other.completionQueues, into: &lines, limit: limit)
        IBVFState.compare(sharedReceiveQueues, other.sharedReceiveQueues, into: &lines, limit: limit)
        IBVFState.compare(queuePairs, other.queuePairs, into: &lines, limit: limit)
        IBVFState.compare(counters, other.counters, into: &lines, limit: limit)
        return lines
    }

    private static func compare<Object: IBStateObject>(
        _ mine: [Object], _ theirs: [Object], into lines: inout [String], limit: Int
    ) {
        guard lines.count < limit, mine != theirs else { return }
        for index in mine.indices where mine[index] != theirs[index] {
            lines.append("\(theirs[index].label): \(mine[index].firstDifference(from: theirs[index]) ?? "differs")")
            if lines.count >= limit { return }
        }
    }
}
