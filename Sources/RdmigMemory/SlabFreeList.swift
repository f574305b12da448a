import Synchronization

/// The free slabs of a pool as a lock-free stack of indices (Treiber's stack, IBM RJ 5118,
/// 1986): `head` packs the top index with a 32-bit version tag that every successful
/// push and pop increments, so a pop that read a stale `next` (the top was popped and pushed
/// back meanwhile: the ABA problem) fails its compare-and-swap and retries.
///
/// Why not a bounded array queue (Vyukov's MPMC): a consumer preempted between claiming a
/// cell and releasing it makes that cell look occupied, so a producer can find the queue
/// "full" although every slab fits; the pool's test with four threads on two CPUs hit that.
/// A stack's push cannot fail. LIFO also hands out the slab returned last, which is the one
/// most likely still in the CPU's cache.
///
/// Lock-free, not wait-free: a thread retries only when another thread's operation succeeded.
final class SlabFreeList: @unchecked Sendable {
    // @unchecked: shared state is only reached through the atomics below; `next` entries are
    // written before the releasing CAS on `head` that publishes them.
    private let count: Int
    private let next: UnsafeMutablePointer<Atomic<UInt32>>
    /// `head` alone on its cache lines, so the `next` array and the pool's other fields do
    /// not bounce with it.
    private let headStorage: UnsafeMutableRawPointer
    private static let cacheLine = 128  // two lines: adjacent-line prefetch on x86 pairs them
    private static let empty = UInt32.max

    private var head: UnsafeMutablePointer<Atomic<UInt64>> {
        headStorage.assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    /// A list holding `0..<count`, index 0 on top.
    init(count: Int) {
        precondition(count >= 0 && count < Int(UInt32.max))
        self.count = count
        next = .allocate(capacity: max(count, 1))
        for index in 0..<count {
            (next + index).initialize(to: Atomic(index + 1 < count ? UInt32(index + 1) : Self.empty))
        }
        headStorage = .allocate(byteCount: Self.cacheLine, alignment: Self.cacheLine)
        headStorage.bindMemory(to: Atomic<UInt64>.self, capacity: 1)
            .initialize(to: Atomic(count > 0 ? 0 : UInt64(Self.empty)))
    }

    deinit {
        next.deinitialize(count: count)
        next.deallocate()
        head.deinitialize(count: 1)
        headStorage.deallocate()
    }

    @inline(__always)
    func push(_ index: UInt32) {
        var old = head.pointee.load(ordering: .relaxed)
        while true {
            next[Int(index)].store(UInt32(truncatingIfNeeded: old), ordering: .relaxed)
            let new = ((old >> 32) &+ 1) << 32 | UInt64(index)
            let (exchanged, current) = head.pointee.weakCompareExchange(
                expected: old, desired: new, successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed)
            if exchanged { return }
            old = current
        }
    }

    @inline(__always)
    func pop() -> UInt32? {
        var old = head.pointee.load(ordering: .acquiring)
        while true {
            let top = UInt32(truncatingIfNeeded: old)
            if top == Self.empty { return nil }
            let below = next[Int(top)].load(ordering: .relaxed)
            let new = ((old >> 32) &+ 1) << 32 | UInt64(below)
            let (exchanged, current) = head.pointee.weakCompareExchange(
                expected: old, desired: new, successOrdering: .acquiringAndReleasing, failureOrdering: .acquiring)
            if exchanged { return top }
            old = current
        }
    }
}
