import RdmigSystem
import Synchronization

/// Pinned, NUMA-local memory cut into fixed-size slabs, for the transport's send and receive
/// buffers. Built once on the control path (allocation, binding, locking and pre-faulting
/// happen in `init`); slabs are then taken and returned on the hot path without locks,
/// allocation, or system calls.
///
/// Registration: register `bytes` (the whole pool) with a transport connection once; a
/// slab is then `registration.slice(offset: slab.offset, length:)`. The pool does not know
/// the transport.
///
/// Concurrency contract:
/// - `acquire()` and `release(_:)` may be called from any number of threads at once; they
///   are lock-free (a versioned stack of slab indices, see `SlabFreeList`), not wait-free.
/// - `acquire()` returns nil only when no slab is free: the caller polls completions and
///   retries. `release` never fails.
/// - Slabs are handed out last-in first-out: the slab returned last, likely still in cache,
///   goes out first. There are no per-thread caches; all threads share one atomic head.
/// - A slab belongs to whoever acquired it until it is released, exactly once. Releasing a
///   slab that is not out (twice, or one never acquired) stops the process with a
///   precondition failure, because a slab handed to two owners would corrupt data silently.
/// - The memory stays mapped until the pool is deinitialized; keep the pool alive while any
///   registration or in-flight work request uses it.
public final class BufferPool: @unchecked Sendable {
    // @unchecked: the stored pointers are written only in init; the shared mutable state is
    // the lock-free queue and the per-slab atomic ownership flags.
    private let memory: PinnedMemory
    private let freeList: SlabFreeList
    private let owned: UnsafeMutablePointer<Atomic<UInt8>>
    public let slabSize: Int
    public let slabCount: Int
    /// How the node was chosen, when the pool was built from a configuration.
    public let nodeChoice: NodeChoice?
    public let hugePagePolicy: HugePagePolicy

    /// Allocates `slabCount` slabs of `slabSize` bytes on `node` (nil: the kernel's local
    /// policy), pinned and pre-faulted.
    public init(
        slabSize: Int, slabCount: Int, node: Int?, hugePages: HugePagePolicy = .auto,
        nodeChoice: NodeChoice? = nil, sysfs: SysfsTree = SysfsTree()
    ) throws(MemoryError) {
        guard slabSize >= 64, slabCount >= 1, slabCount <= Int(Int32.max),
              slabSize.multipliedReportingOverflow(by: slabCount).overflow == false
        else {
            throw .invalidPoolGeometry("a pool needs at least one slab of at least 64 bytes (asked: \(slabCount) x \(slabSize) bytes)")
        }
        memory = try PinnedMemory(length: slabSize * slabCount, node: node, hugePages: hugePages, sysfs: sysfs)
        self.slabSize = slabSize
        self.slabCount = slabCount
        self.nodeChoice = nodeChoice
        hugePagePolicy = hugePages
        freeList = SlabFreeList(count: slabCount)
        owned = .allocate(capacity: slabCount)
        for index in 0..<slabCount {
            (owned + index).initialize(to: Atomic(0))
        }
    }

    /// Builds the pool the `[memory]` configuration describes, on the node it selects for
    /// `device` (a network interface or RDMA device name; nil: no device preference).
    public convenience init(
        configuration: MemoryConfiguration, topology: MachineTopology, device: String? = nil,
        sysfs: SysfsTree = SysfsTree()
    ) throws(MemoryError) {
        do {
            try configuration.validate()
        } catch {
            throw .invalidPoolGeometry(error.description)
        }
        let choice = try topology.chooseNode(configuration.node, device: device)
        try self.init(
            slabSize: Int(configuration.slabSize.bytes),
            slabCount: Int(configuration.poolSize.bytes / configuration.slabSize.bytes),
            node: choice.node, hugePages: configuration.hugePages, nodeChoice: choice, sysfs: sysfs)
    }

    deinit {
        owned.deinitialize(count: slabCount)
        owned.deallocate()
    }

    /// The whole pool, to register with a transport once.
    public var bytes: UnsafeMutableRawBufferPointer { memory.bytes }

    public var node: Int? { memory.node }
    public var pageSize: PageSize { memory.pageSize }
    /// Bytes locked: the pool rounded up to whole pages.
    public var lockedBytes: Int { memory.mappedLength }
    /// Why huge pages were not used although the policy allowed them; log it.
    public var fallbackReason: String? { memory.fallbackReason }

    /// Takes a free slab; nil when none is free right now. Lock-free, no allocation.
    @inline(__always)
    public func acquire() -> Slab? {
        guard let index = freeList.pop() else { return nil }
        let previous = owned[Int(index)].exchange(1, ordering: .acquiring)
        precondition(previous == 0, "BufferPool: slab handed out twice (internal error)")
        return slab(at: Int(index))
    }

    /// Gives a slab back. Lock-free, no allocation. Must be called once per acquired slab.
    @inline(__always)
    public func release(_ slab: Slab) {
        let index = Int(slab.index)
        precondition(index >= 0 && index < slabCount && slab.base == memory.base + index * slabSize,
                     "BufferPool: slab does not belong to this pool")
        let (exchanged, _) = owned[index].compareExchange(expected: 1, desired: 0, ordering: .releasing)
        precondition(exchanged, "BufferPool: slab \(index) released twice or never acquired")
        freeList.push(UInt32(index))
    }

    /// The slab with this index, whether free or not: for a receiver whose peer writes into
    /// slabs by index, and for tests.
    @inline(__always)
    public func slab(at index: Int) -> Slab {
        precondition(index >= 0 && index < slabCount, "BufferPool: slab index \(index) outside 0..<\(slabCount)")
        return Slab(index: Int32(index), offset: index * slabSize, base: memory.base + index * slabSize, length: slabSize)
    }

    /// Free slabs now, counted from the ownership flags (O(slabs), for reports, not for the
    /// hot path); only a hint while other threads acquire and release.
    public var approximateFreeCount: Int {
        (0..<slabCount).reduce(0) { $0 + (owned[$1].load(ordering: .relaxed) == 0 ? 1 : 0) }
    }

    /// What was built, for logs, `rdmig probe` and benchmark reports.
    public var report: Report {
        Report(
            size: UInt64(slabSize * slabCount), lockedSize: UInt64(lockedBytes), slabSize: UInt64(slabSize),
            slabCount: slabCount, node: node, nodeReason: nodeChoice?.reason, pageSize: pageSize,
            hugePages: hugePagePolicy, fallbackReason: fallbackReason)
    }

    public struct Report: Codable, Sendable, Equatable, CustomStringConvertible {
        public var size: UInt64
        public var lockedSize: UInt64
        public var slabSize: UInt64
        public var slabCount: Int
        public var node: Int?
        public var nodeReason: String?
        public var pageSize: PageSize
        public var hugePages: HugePagePolicy
        public var fallbackReason: String?

        enum CodingKeys: String, CodingKey {
            case size, node
            case lockedSize = "locked-size"
            case slabSize = "slab-size"
            case slabCount = "slab-count"
            case nodeReason = "node-reason"
            case pageSize = "page-size"
            case hugePages = "huge-pages"
            case fallbackReason = "fallback-reason"
        }

        public var description: String {
            var text = "\(ByteCount(size).humanReadable) pool, \(slabCount) slabs of \(ByteCount(slabSize)), "
            text += node.map { "node \($0)" } ?? "no node binding"
            if let nodeReason { text += " (\(nodeReason))" }
            text += ", \(pageSize) pages, \(ByteCount(lockedSize).humanReadable) locked"
            if let fallbackReason { text += "; \(fallbackReason)" }
            return text
        }
    }
}
