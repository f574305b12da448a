import Synchronization

/// Completions of one `tcp` connection: a single-producer (receiver thread), single-consumer
/// (polling thread) ring. Each entry says which queue slots its consumption frees, so that
/// slots are reused only once the application has seen the completion (see `TCPSendQueue`).
/// Its capacity is the send plus receive queue depth: every entry holds a slot of one of them,
/// so it cannot overflow.
final class TCPCompletionQueue: @unchecked Sendable {
    struct Entry {
        var completion: Completion = .empty
        /// When non-zero: send-queue slots up to this sequence are freed once this is polled.
        var freesSendThrough: UInt64 = 0
        /// This completion is for one posted receive, whose slot is freed once it is polled.
        var freesReceive = false
    }

    private let mask: UInt64
    private let storage: UnsafeMutablePointer<Entry>
    let capacity: Int
    private let tail = Atomic<UInt64>(0)
    private let head = Atomic<UInt64>(0)

    init(capacity minimum: Int) {
        var capacity = 1
        while capacity < minimum { capacity <<= 1 }
        self.capacity = capacity
        mask = UInt64(capacity - 1)
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: Entry(), count: capacity)
    }

    deinit { storage.deallocate() }

    /// Producer (receiver thread).
    @inline(__always)
    func push(_ entry: Entry) {
        let position = tail.load(ordering: .relaxed)
        precondition(position &- head.load(ordering: .acquiring) < UInt64(capacity),
                     "tcp completion queue overflow: more completions than queue slots")
        storage[Int(position & mask)] = entry
        tail.store(position &+ 1, ordering: .releasing)
    }

    /// Consumer (polling thread): moves up to `limit` entries to `body`, returns how many.
    @inline(__always)
    func pop(limit: Int, _ body: (Entry) -> Void) -> Int {
        let start = head.load(ordering: .relaxed)
        let available = Int(tail.load(ordering: .acquiring) &- start)
        let count = min(available, limit)
        guard count > 0 else { return 0 }
        for offset in 0..<count {
            body(storage[Int((start &+ UInt64(offset)) & mask)])
        }
        head.store(start &+ UInt64(count), ordering: .releasing)
        return count
    }

    /// Consumer side: whether anything is waiting.
    @inline(__always)
    var isEmpty: Bool { head.load(ordering: .relaxed) == tail.load(ordering: .acquiring) }
}
