/// What a guest does to its VF while it runs, as state changes: traffic advances QP PSNs and
/// WQE counters, CQs are polled, MRs are re-registered with new keys, SRQs are refilled, and
/// now and then a connection breaks and is re-established with a new peer. Deterministic
/// for a seed, so a run can be replayed.
struct IBVFMutator: Sendable {
    private var rng: SplitMix64

    init(seed: UInt64) {
        // A different stream than the population's, from the same seed.
        rng = SplitMix64(seed: seed ^ 0x5A5A_5A5A_A5A5_A5A5)
    }

    /// Applies `count` changes; every object touched is reported to `touched`.
    mutating func apply(_ count: Int, to state: inout IBVFState, touched: inout IBSourceSession?) {
        let shape = state.shape
        for _ in 0..<count {
            let roll = rng.below(100)
            switch roll {
            case 0..<55:
                let index = rng.below(shape.queuePairs)
                if state.queuePairs[index].state == .readyToSend {
                    traffic(on: index, state: &state, touched: &touched)
                } else {
                    advanceConnection(of: index, state: &state, touched: &touched)
                }
            case 55..<70:
                let index = rng.below(shape.completionQueues)
                state.completionQueues[index].consumerIndex &+= UInt32(1 + rng.below(16))
                state.completionQueues[index].armed = rng.below(2) == 0
                touched?.tracker.markDirty(.completionQueue, index)
            case 70..<80:
                let index = rng.below(shape.memoryRegions)
                reregister(index, state: &state)
                touched?.tracker.markDirty(.memoryRegion, index)
            case 80..<88:
                guard shape.sharedReceiveQueues > 0 else { continue }
                let index = rng.below(shape.sharedReceiveQueues)
                state.sharedReceiveQueues[index].wqeCounter &+= UInt16(1 + rng.below(64))
                if rng.below(8) == 0 { state.sharedReceiveQueues[index].limit = UInt32(rng.below(64)) }
                touched?.tracker.markDirty(.sharedReceiveQueue, index)
            case 88..<92:
                // A connection fails (retry exhausted, peer gone): RTS -> ERR, later reconnected.
                let index = rng.below(shape.queuePairs)
                if state.queuePairs[index].state == .readyToSend {
                    state.queuePairs[index].state = .error
                } else {
                    advanceConnection(of: index, state: &state, touched: &touched)
                }
                touched?.tracker.markDirty(.queuePair, index)
            default:
                // Receive-side traffic only: the peer sends, this QP's expected PSN moves.
                let index = rng.below(shape.queuePairs)
                var qp = state.queuePairs[index]
                let packets = UInt32(1 + rng.below(32))
                qp.receivePSN = (qp.receivePSN &+ packets) & IBQueuePair.psnMask
                qp.receiveHead &+= packets
                state.queuePairs[index] = qp
                touched?.tracker.markDirty(.queuePair, index)
                countReceived(packets, mtu: qp.pathMTU, port: qp.port, state: &state, touched: &touched)
            }
        }
    }

    private mutating func traffic(on index: Int, state: inout IBVFState, touched: inout IBSourceSession?) {
        var qp = state.queuePairs[index]
        let packets = UInt32(1 + rng.below(64))
        qp.sendPSN = (qp.sendPSN &+ packets) & IBQueuePair.psnMask
        qp.sendHead &+= packets
        state.queuePairs[index] = qp
        touched?.tracker.markDirty(.queuePair, index)
        let cq = Int(qp.sendCQN - IBVFState.cqnBase)
        state.completionQueues[cq].consumerIndex &+= packets
        touched?.tracker.markDirty(.completionQueue, cq)
        let port = Int(qp.port) - 1
        state.counters[port].transmitPackets &+= UInt64(packets)
        state.counters[port].transmitData &+= UInt64(packets) * UInt64(qp.pathMTU.bytes / 4)
        touched?.tracker.markDirty(.counters, port)
    }

    private func countReceived(
        _ packets: UInt32, mtu: IBMTU, port: UInt8, state: inout IBVFState, touched: inout IBSourceSession?
    ) {
        let index = Int(port) - 1
        state.counters[index].receivePackets &+= UInt64(packets)
        state.counters[index].receiveData &+= UInt64(packets) * UInt64(mtu.bytes / 4)
        touched?.tracker.markDirty(.counters, index)
    }

    /// One step of the verbs connection cycle: ERR -> RESET -> INIT -> RTR (new peer, new
    /// expected PSN) -> RTS (new send PSN).
    private mutating func advanceConnection(of index: Int, state: inout IBVFState, touched: inout IBSourceSession?) {
        var qp = state.queuePairs[index]
        switch qp.state {
        case .error, .sendQueueError, .sendQueueDrained:
            qp.state = .reset
        case .reset:
            qp.state = .initialized
        case .initialized:
            qp.state = .readyToReceive
            if qp.type == .unreliableDatagram {
                qp.receivePSN = rng.u32() & IBQueuePair.psnMask
            } else {
                IBVFState.connect(&qp, rng: &rng)
            }
        case .readyToReceive:
            qp.state = .readyToSend
            qp.sendPSN = rng.u32() & IBQueuePair.psnMask
        case .readyToSend:
            return
        }
        state.queuePairs[index] = qp
        touched?.tracker.markDirty(.queuePair, index)
    }

    /// ibv_rereg_mr: same MPT index, new key variant, sometimes a new range.
    private mutating func reregister(_ index: Int, state: inout IBVFState) {
        var mr = state.memoryRegions[index]
        let variant = (mr.lkey &+ 1) & 0xFF
        mr.lkey = (mr.lkey & ~0xFF) | variant
        mr.rkey = mr.access & 0x6 != 0 ? mr.lkey : 0
        if rng.below(4) == 0 {
            mr.address = 0x7F00_0000_0000 + (UInt64(rng.below(1 << 24)) << UInt64(mr.pageShift))
            mr.length = UInt64(1 + rng.below(256)) << UInt64(mr.pageShift)
        }
        state.memoryRegions[index] = mr
    }
}
