import Synchronization

/// The receive queue of one `tcp` connection: posted receive buffers, consumed in order by
/// incoming SENDs and WRITE_WITH_IMMs. One writer per cursor, no locks:
/// - `posted` (application thread): receives posted so far; the sender thread advertises it
///   to the peer as its receive credits (see `TCPFrameHeader`, ACK).
/// - `consumed` (receiver thread): receives used by incoming messages.
/// - `freed` (polling thread): receives whose completion was polled; their slots are reused.
final class TCPReceiveQueue: @unchecked Sendable {
    struct Entry {
        var id: UInt64 = 0
        var address: UInt64 = 0
        var length: Int = 0
    }

    let depth: Int
    private let mask: UInt64
    private let storage: UnsafeMutablePointer<Entry>

    let posted = Atomic<UInt64>(0)
    let consumed = Atomic<UInt64>(0)
    let freed = Atomic<UInt64>(0)

    init(depth: Int) {
        precondition(depth > 0, "receive queue depth must be positive")
        self.depth = depth
        var capacity = 1
        while capacity < depth { capacity <<= 1 }
        mask = UInt64(capacity - 1)
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: Entry(), count: capacity)
    }

    deinit { storage.deallocate() }

    /// The entry with 1-based index `index`.
    @inline(__always)
    subscript(index: UInt64) -> Entry {
        storage[Int(index & mask)]
    }

    /// Application thread: appends `entry`, or returns false when `depth` receives are outstanding.
    @inline(__always)
    func post(_ entry: Entry) -> Bool {
        let index = posted.load(ordering: .relaxed) &+ 1
        guard index &- freed.load(ordering: .acquiring) <= UInt64(depth) else { return false }
        storage[Int(index & mask)] = entry
        posted.store(index, ordering: .releasing)
        return true
    }
}
