/// One channel's share of the connection's send queue, and its selective signalling.
///
/// The send queue is shared by every channel on the connection, so each reserves `capacity`
/// slots and never has more work requests outstanding. A request counts as outstanding until
/// a signalled request of the same channel, posted at or after it, completes: send-queue
/// completions are in posting order, so that completion proves the earlier unsignalled ones
/// are done too (perftest's cq_mod scheme). The request that fills the reservation is always
/// signalled, so a full account can always wait for a completion that frees it.
struct SendQueueAccount {
    let capacity: Int
    let signalInterval: Int
    private(set) var posted: UInt64 = 0
    /// Every request with a sequence below this has completed.
    private(set) var completed: UInt64 = 0
    private var sinceSignal = 0

    init(capacity: Int, signalInterval: Int) {
        precondition(capacity > 0, "a send-queue reservation needs at least one slot")
        self.capacity = capacity
        self.signalInterval = max(1, min(signalInterval, capacity))
    }

    var outstanding: Int { Int(posted &- completed) }
    var hasRoom: Bool { outstanding < capacity }
    var isIdle: Bool { posted == completed }

    /// Takes the next sequence number; call only when `hasRoom`.
    @inline(__always)
    mutating func claim(forceSignal: Bool = false) -> (sequence: UInt64, signaled: Bool) {
        precondition(hasRoom, "send-queue reservation overrun")
        let sequence = posted
        posted &+= 1
        sinceSignal += 1
        let signaled = forceSignal || sinceSignal >= signalInterval || outstanding == capacity
        if signaled { sinceSignal = 0 }
        return (sequence, signaled)
    }

    /// A signalled request completed: it and everything posted before it are done.
    @inline(__always)
    mutating func complete(sequence: UInt64) {
        if sequence &+ 1 > completed { completed = sequence &+ 1 }
    }
}
