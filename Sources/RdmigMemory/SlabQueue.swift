import Synchronization

/// A bounded multi-producer multi-consumer queue of slab indices without locks: Dmitry
/// Vyukov's array queue ("Bounded MPMC queue", 1024cores.net). Each cell carries a sequence
/// number that says whether it is ready to be written (== position) or read (== position + 1);
/// producers and consumers claim positions with one compare-and-swap each and never wait on
/// a lock. Not wait-free: a thread preempted between claiming a cell and publishing it makes
/// the cell look empty (or full) to others until it resumes, so `pop` can return nil while
/// another thread is in the middle of a `push`.
///
/// The head and tail counters sit on separate cache lines so that producers and consumers do
/// not invalidate each other's line on every operation.
final class SlabQueue: @unchecked Sendable {
    // @unchecked: all shared state is reached through Atomics or through cells published by
    // them (release store of the sequence after the value, acquire load before reading it).
    private let capacity: Int
    private let mask: Int
    private let sequences: UnsafeMutablePointer<Atomic<Int>>
    private let values: UnsafeMutablePointer<Int32>
    private let counters: UnsafeMutableRawPointer
    private static let cacheLine = 128  // two lines: adjacent-line prefetch on x86 pairs them

    private var enqueuePosition: UnsafeMutablePointer<Atomic<Int>> {
        counters.assumingMemoryBound(to: Atomic<Int>.self)
    }

    private var dequeuePosition: UnsafeMutablePointer<Atomic<Int>> {
        (counters + Self.cacheLine).assumingMemoryBound(to: Atomic<Int>.self)
    }

    /// A queue that can hold at least `minimumCapacity` indices (rounded up to a power of two).
    init(minimumCapacity: Int) {
        var size = 2
        while size < minimumCapacity { size <<= 1 }
        capacity = size
        mask = size - 1
        sequences = .allocate(capacity: size)
        for index in 0..<size { (sequences + index).initialize(to: Atomic(index)) }
        values = .allocate(capacity: size)
        values.initialize(repeating: -1, count: size)
        counters = .allocate(byteCount: 2 * Self.cacheLine, alignment: Self.cacheLine)
        let slots = counters.bindMemory(
            to: Atomic<Int>.self, capacity: 2 * Self.cacheLine / MemoryLayout<Atomic<Int>>.stride)
        slots.initialize(to: Atomic(0))
        (slots + Self.cacheLine / MemoryLayout<Atomic<Int>>.stride).initialize(to: Atomic(0))
    }

    deinit {
        sequences.deinitialize(count: capacity)
        sequences.deallocate()
        values.deallocate()
        enqueuePosition.deinitialize(count: 1)
        dequeuePosition.deinitialize(count: 1)
        counters.deallocate()
    }

    /// Adds `value`; false only when the queue is full.
    @inline(__always)
    func push(_ value: Int32) -> Bool {
        var position = enqueuePosition.pointee.load(ordering: .relaxed)
        while true {
            let cell = position & mask
            let sequence = sequences[cell].load(ordering: .acquiring)
            let difference = sequence &- position
            if difference == 0 {
                let (exchanged, current) = enqueuePosition.pointee.weakCompareExchange(
                    expected: position, desired: position &+ 1, ordering: .relaxed)
                if exchanged {
                    values[cell] = value
                    sequences[cell].store(position &+ 1, ordering: .releasing)
                    return true
                }
                position = current
            } else if difference < 0 {
                return false
            } else {
                position = enqueuePosition.pointee.load(ordering: .relaxed)
            }
        }
    }

    /// Takes the oldest value; nil when the queue is (or looks) empty.
    @inline(__always)
    func pop() -> Int32? {
        var position = dequeuePosition.pointee.load(ordering: .relaxed)
        while true {
            let cell = position & mask
            let sequence = sequences[cell].load(ordering: .acquiring)
            let difference = sequence &- (position &+ 1)
            if difference == 0 {
                let (exchanged, current) = dequeuePosition.pointee.weakCompareExchange(
                    expected: position, desired: position &+ 1, ordering: .relaxed)
                if exchanged {
                    let value = values[cell]
                    sequences[cell].store(position &+ mask &+ 1, ordering: .releasing)
                    return value
                }
                position = current
            } else if difference < 0 {
                return nil
            } else {
                position = dequeuePosition.pointee.load(ordering: .relaxed)
            }
        }
    }

    /// Entries now; only a hint while other threads push and pop.
    var approximateCount: Int {
        let count = enqueuePosition.pointee.load(ordering: .relaxed) &- dequeuePosition.pointee.load(ordering: .relaxed)
        return min(max(count, 0), capacity)
    }
}
