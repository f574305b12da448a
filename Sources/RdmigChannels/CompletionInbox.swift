import RdmigSystem
import RdmigTransport
import Synchronization

/// One channel's completions, handed from the router's poller thread to the channel's own
/// thread: a single-producer single-consumer ring (no lock, no allocation after init) and a
/// doorbell the consumer sleeps on.
///
/// Its capacity is what the channel reserved (signalled work requests it may have
/// outstanding plus receives it may consume), so a push only fails when the peer broke the
/// credit rules; the router then fails the connection instead of blocking.
final class CompletionInbox: @unchecked Sendable {
    let channel: ChannelID
    let capacity: Int
    private let mask: Int
    private let storage: UnsafeMutablePointer<Completion>
    private let produced = Atomic<Int>(0)
    private let consumed = Atomic<Int>(0)
    let doorbell: Doorbell

    init(channel: ChannelID, minimumCapacity: Int) throws(ChannelError) {
        var capacity = 8
        while capacity < minimumCapacity { capacity <<= 1 }
        self.channel = channel
        self.capacity = capacity
        mask = capacity - 1
        do { doorbell = try Doorbell() } catch { throw .system(error) }
        storage = .allocate(capacity: capacity)
        storage.initialize(repeating: .empty, count: capacity)
    }

    deinit {
        storage.deinitialize(count: capacity)
        storage.deallocate()
    }

    /// Producer (the poller thread only).
    @inline(__always)
    func push(_ completion: Completion) -> Bool {
        let tail = produced.load(ordering: .relaxed)
        let head = consumed.load(ordering: .acquiring)
        if tail &- head >= capacity { return false }
        storage[tail & mask] = completion
        // Sequentially consistent so that it orders against the doorbell's `sleeping` flag:
        // either the consumer sees this item when it re-checks, or the producer sees it asleep.
        produced.store(tail &+ 1, ordering: .sequentiallyConsistent)
        doorbell.ring()
        return true
    }

    /// Consumer (the channel's thread only).
    @inline(__always)
    func pop() -> Completion? {
        let head = consumed.load(ordering: .relaxed)
        let tail = produced.load(ordering: .acquiring)
        if head == tail { return nil }
        let completion = storage[head & mask]
        consumed.store(head &+ 1, ordering: .releasing)
        return completion
    }

    var hasWork: Bool {
        produced.load(ordering: .sequentiallyConsistent) != consumed.load(ordering: .relaxed)
    }
}
