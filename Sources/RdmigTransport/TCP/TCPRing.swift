import Synchronization

/// The fixed ring under a `tcp` connection's send and receive queues: entries posted by the
/// application thread and freed by the polling thread, each cursor with one writer, so neither
/// posting nor polling takes a lock. Sequences start at 1 and only grow; the entry for
/// sequence `s` lives in slot `s & mask`. Subclasses add the cursor between the two (what the
/// socket threads have done with an entry).
class TCPRing<Entry>: @unchecked Sendable {
    let depth: Int
    private let mask: UInt64
    private let storage: UnsafeMutablePointer<Entry>

    /// Application thread: the last entry posted.
    let posted = Atomic<UInt64>(0)
    /// Polling thread: the last entry whose slot may be reused.
    let freed = Atomic<UInt64>(0)

    init(depth: Int, empty: Entry) {
        precondition(depth > 0, "queue depth must be positive")
        self.depth = depth
        var capacity = 1
        while capacity < depth { capacity <<= 1 }
        mask = UInt64(capacity - 1)
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: empty, count: capacity)
    }

    deinit { storage.deallocate() }

    /// The entry with sequence `sequence`.
    @inline(__always)
    final subscript(sequence: UInt64) -> Entry {
        storage[Int(sequence & mask)]
    }

    /// Application thread: appends `entry`, or returns false when `depth` entries are outstanding.
    @inline(__always)
    final func post(_ entry: Entry) -> Bool {
        let sequence = posted.load(ordering: .relaxed) &+ 1
        guard sequence &- freed.load(ordering: .acquiring) <= UInt64(depth) else { return false }
        storage[Int(sequence & mask)] = entry
        posted.store(sequence, ordering: .releasing)
        return true
    }
}
