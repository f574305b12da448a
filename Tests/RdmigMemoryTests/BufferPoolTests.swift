#if canImport(Glibc)
import Glibc
#endif
import CNUMA
import Synchronization
import Testing
import RdmigSystem
@testable import RdmigMemory

/// Everything that locks memory runs one test at a time: VmLck and RLIMIT_MEMLOCK belong to
/// the whole process, and one test lowers the limit for a moment.
@Suite(.serialized) struct PinnedBufferPool {
    static let slab = 64 * 1024

    @Test func poolPagesAreOnTheRequestedNodeAsTheKernelReports() throws {
        let pool = try BufferPool(slabSize: Self.slab, slabCount: 32, node: 0, hugePages: .off)
        let base = UnsafeRawPointer(pool.bytes.baseAddress!)
        let policy = try #require(KernelAnswers.policy(at: base))
        #expect(policy.mode == MPOL_BIND)
        #expect(policy.nodes == [0])
        for offset in stride(from: 0, to: pool.bytes.count, by: 4096) {
            #expect(KernelAnswers.nodeOfPage(at: base + offset) == 0)
        }
        let nodes = KernelAnswers.nodesOfPages(base, length: pool.bytes.count)
        #expect(nodes.count == 512)
        #expect(nodes.allSatisfy { $0 == 0 }, "move_pages: \(Set(nodes))")
    }

    @Test func poolIsPinnedVmLckGrowsByItsSizeAndShrinksWhenItIsGone() throws {
        let before = KernelAnswers.lockedBytes()
        do {
            let pool = try BufferPool(slabSize: Self.slab, slabCount: 64, node: 0, hugePages: .off)
            #expect(KernelAnswers.lockedBytes() == before + 4 << 20)
            #expect(pool.lockedBytes == 4 << 20)
        }
        #expect(KernelAnswers.lockedBytes() == before)
    }

    @Test func pagesArePrefaultedBeforeFirstUse() throws {
        let pool = try BufferPool(slabSize: Self.slab, slabCount: 16, node: 0, hugePages: .off)
        // move_pages reports -ENOENT for a page that was never faulted in.
        let nodes = KernelAnswers.nodesOfPages(UnsafeRawPointer(pool.bytes.baseAddress!), length: pool.bytes.count)
        #expect(!nodes.isEmpty)
        #expect(!nodes.contains(-ENOENT))
    }

    @Test func configurationWithNodeZeroBuildsThePoolThere() throws {
        let topology = MachineTopology.discover()
        let configuration = try MemoryConfiguration(settings: [
            "node": "0", "huge-pages": "off", "pool-size": "1MiB", "slab-size": "64KiB",
        ])
        let pool = try BufferPool(configuration: configuration, topology: topology)
        #expect(pool.node == 0)
        #expect(pool.nodeChoice == NodeChoice(node: 0, reason: "configured"))
        #expect(pool.slabCount == 16)
        #expect(KernelAnswers.nodeOfPage(at: UnsafeRawPointer(pool.bytes.baseAddress!)) == 0)
        #expect(pool.report.description
            == "1.00 MiB pool, 16 slabs of 64KiB, node 0 (configured), 4 KiB pages, 1.00 MiB locked")
    }

    @Test func autoPutsThePoolOnTheNodeOfTheInterface() throws {
        let topology = MachineTopology.discover()
        let interface = try #require(topology.interfaces.first { $0.node != nil })
        let configuration = MemoryConfiguration(hugePages: .off, poolSize: .mebibytes(1))
        let pool = try BufferPool(configuration: configuration, topology: topology, device: interface.name)
        #expect(pool.node == interface.node)
        #expect(pool.nodeChoice?.reason == "local to \(interface.name)")
        #expect(KernelAnswers.nodeOfPage(at: UnsafeRawPointer(pool.bytes.baseAddress!)).map(Int.init) == interface.node)
    }

    @Test func aNodeThatDoesNotExistIsAClearError() throws {
        let topology = MachineTopology.discover()
        let missing = (topology.nodeIDs.max() ?? 0) + 7
        let configuration = MemoryConfiguration(node: .node(missing), hugePages: .off, poolSize: .mebibytes(1))
        #expect(throws: MemoryError.noSuchNode(requested: missing, existing: topology.nodeIDs)) {
            _ = try BufferPool(configuration: configuration, topology: topology)
        }
        if topology.nodeIDs == [0] {
            #expect(MemoryError.noSuchNode(requested: missing, existing: [0]).description
                == "NUMA node \(missing) does not exist: this machine has only node 0; set the node to auto or to one of them")
        }
        // Asked directly, the kernel refuses to bind to it too, and the error names the call.
        do {
            _ = try PinnedMemory(length: 1 << 20, node: missing, hugePages: .off)
            Issue.record("mbind to node \(missing) succeeded")
        } catch {
            guard case .system(let failure) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(failure.call == "mbind")
            #expect(failure.errno == EINVAL)
            #expect(failure.description.hasSuffix(": MPOL_BIND to NUMA node \(missing)"))
        }
    }

    @Test func withoutHugePagesThePoolFallsBackTo4KiBAndSaysWhy() throws {
        let machine = try FakeMachine(hugePages2MiBFree: 0)
        let memory = try PinnedMemory(length: 2 << 20, node: 0, hugePages: .auto, sysfs: machine.sysfs)
        #expect(memory.pageSize == .base4KiB)
        #expect(memory.fallbackReason
            == "4 KiB pages: 0 free 2 MiB huge pages on node 0, 1 needed (none configured: set vm.nr_hugepages "
                + "or hugepagesz=/hugepages= on the kernel command line)")
        #expect(KernelAnswers.kernelPageSize(ofMappingAt: UnsafeRawPointer(memory.base)) == 4096)

        let oneGiB = try PinnedMemory(length: 1 << 20, node: 0, hugePages: .size1GiB, sysfs: machine.sysfs)
        #expect(oneGiB.pageSize == .base4KiB)
        #expect(oneGiB.fallbackReason
            == "4 KiB pages: the kernel offers no 1 GiB huge pages (no hugepages-1048576kB in /sys/kernel/mm/hugepages)")

        let off = try PinnedMemory(length: 1 << 20, node: 0, hugePages: .off, sysfs: machine.sysfs)
        #expect(off.fallbackReason == nil)
    }

    @Test func hugePagesThatSysfsCountsButTheNodeCannotGiveFallBackAfterTheKernelRefuses() throws {
        // The fake sysfs claims free 2 MiB pages; the real kernel has none (unless configured):
        // mmap(MAP_HUGETLB) or the pre-fault fails, and the pool falls back with the errno.
        let real = HugePageCount.systemWide().first { $0.pageSize == .huge2MiB }
        guard let real, real.available == 0 else {
            try Test.cancel("this machine has free 2 MiB huge pages; the refusal cannot be provoked")
        }
        let machine = try FakeMachine(hugePages2MiBFree: 8)
        let memory = try PinnedMemory(length: 2 << 20, node: 0, hugePages: .size2MiB, sysfs: machine.sysfs)
        #expect(memory.pageSize == .base4KiB)
        let fallbackReason = memory.fallbackReason
        let reason = try #require(fallbackReason)
        #expect(reason.hasPrefix("4 KiB pages: 2 MiB huge pages failed: "))
        #expect(reason.contains("ENOMEM"))
    }

    @Test func realHugePagesAreUsedWhenTheKernelHasThem() throws {
        let path = "/proc/sys/vm/nr_hugepages"
        guard let original = KernelAnswers.readText(path)?.filter({ !$0.isWhitespace }) else {
            try Test.cancel("cannot read \(path)")
        }
        let wanted = (Int(original) ?? 0) + 2
        guard KernelAnswers.writeText("\(wanted)", to: path) else {
            try Test.cancel("cannot configure huge pages (\(path) not writable: not root?)")
        }
        defer { _ = KernelAnswers.writeText(original, to: path) }
        guard let count = HugePageCount.onNode(0).first(where: { $0.pageSize == .huge2MiB }), count.free >= 2 else {
            try Test.cancel("the kernel could not set aside two 2 MiB pages on node 0")
        }
        do {
            let memory = try PinnedMemory(length: 4 << 20, node: 0, hugePages: .size2MiB)
            #expect(memory.pageSize == .huge2MiB)
            #expect(memory.fallbackReason == nil)
            let base = UnsafeRawPointer(memory.base)
            #expect(KernelAnswers.kernelPageSize(ofMappingAt: base) == 2 << 20)
            #expect(KernelAnswers.nodesOfPages(base, length: 4 << 20, stride: 2 << 20) == [0, 0])
            #expect(KernelAnswers.policy(at: base)?.nodes == [0])
        }
    }

    @Test func aMemlockLimitBelowThePoolIsAClearError() throws {
        // Root has CAP_IPC_LOCK, which lifts the limit: the pool is built on a thread that
        // gave up CAP_IPC_LOCK (capabilities are per thread), under a lowered soft limit.
        let original = Privileges.memlockSoftLimit()
        let outcome = Mutex<Result<String, MemoryError>?>(nil)
        let dropped = Atomic<Bool>(false)
        var lowered = original
        lowered.rlim_cur = 1 << 20
        guard Privileges.setMemlock(lowered) else { try Test.cancel("cannot lower RLIMIT_MEMLOCK") }
        defer { Privileges.setMemlock(original) }
        let thread = try SystemThread(name: "memlock-test") {
            guard Privileges.dropIPCLockFromCallingThread() else { return }
            dropped.store(true, ordering: .relaxed)
            do throws(MemoryError) {
                let memory = try PinnedMemory(length: 2 << 20, node: 0, hugePages: .off)
                outcome.withLock { $0 = .success("pinned \(memory.mappedLength) bytes") }
            } catch {
                outcome.withLock { $0 = .failure(error) }
            }
        }
        thread.join()
        Privileges.setMemlock(original)
        guard dropped.load(ordering: .relaxed) else { try Test.cancel("capset could not drop CAP_IPC_LOCK") }
        let result = try #require(outcome.withLock { $0 })
        guard case .failure(let error) = result else {
            Issue.record("pool was pinned beyond the limit: \(result)")
            return
        }
        guard case .memlockLimit(let requested, let limit, _, let errno) = error else {
            Issue.record("unexpected error \(error)")
            return
        }
        #expect(requested == 2 << 20)
        #expect(limit == 1 << 20)
        #expect(errno == ENOMEM)
        if KernelAnswers.lockedBytes() == 0 {
            #expect(error.description
                == "memlock limit 1.00 MiB is below the 2.00 MiB pool: raise LimitMEMLOCK (systemd) / `ulimit -l`, or run with CAP_IPC_LOCK")
        }
        #expect(Privileges.memlockSoftLimit().rlim_cur == original.rlim_cur)
    }

    @Test func slabsStayUniqueWhileThreadsTakeAndReturnThem() throws {
        let slabCount = 16
        let pool = try BufferPool(slabSize: 4096, slabCount: slabCount, node: 0, hugePages: .off)
        // The test keeps its own ownership record, independent of the pool's.
        let holdersBox = Holders(count: slabCount)
        let violations = Atomic<Int>(0)
        let completed = Atomic<Int>(0)
        let rounds = 20_000
        var threads: [SystemThread] = []
        for worker in 1...4 {
            threads.append(try SystemThread(name: "slab-\(worker)") {
                var done = 0
                while done < rounds {
                    guard let slab = pool.acquire() else {
                        sched_yield()
                        continue
                    }
                    let (claimed, _) = holdersBox.slots[Int(slab.index)].compareExchange(
                        expected: 0, desired: worker, ordering: .acquiringAndReleasing)
                    if !claimed { violations.add(1, ordering: .relaxed) }
                    let words = slab.bytes.bindMemory(to: Int.self)
                    words[0] = worker
                    words[words.count - 1] = worker
                    if done % 64 == 0 { sched_yield() }
                    if words[0] != worker || words[words.count - 1] != worker { violations.add(1, ordering: .relaxed) }
                    holdersBox.slots[Int(slab.index)].store(0, ordering: .releasing)
                    pool.release(slab)
                    done += 1
                }
                completed.add(done, ordering: .relaxed)
            })
        }
        for thread in threads { thread.join() }
        #expect(violations.load(ordering: .relaxed) == 0)
        #expect(completed.load(ordering: .relaxed) == 4 * rounds)
        var indices: [Int32] = []
        while let slab = pool.acquire() { indices.append(slab.index) }
        #expect(indices.count == slabCount)
        #expect(Set(indices).count == slabCount)
        for index in indices { pool.release(pool.slab(at: Int(index))) }
        #expect(pool.approximateFreeCount == slabCount)
    }

    @Test func slabsTileThePoolForOneRegistration() throws {
        let pool = try BufferPool(slabSize: Self.slab, slabCount: 8, node: 0, hugePages: .off)
        let base = pool.bytes.baseAddress!
        #expect(pool.bytes.count == 8 * Self.slab)
        for index in 0..<8 {
            let slab = pool.slab(at: index)
            #expect(slab.offset == index * Self.slab)
            #expect(slab.base == base + slab.offset)
            #expect(slab.length == Self.slab)
        }
        var taken: [Slab] = []
        while let slab = pool.acquire() { taken.append(slab) }
        #expect(taken.map(\.index) == Array(0..<8))
        #expect(pool.acquire() == nil)
        for slab in taken { pool.release(slab) }
    }

    @Test func releasingASlabTwiceStopsTheProcess() async {
        await #expect(processExitsWith: .failure) {
            let pool = try BufferPool(slabSize: 4096, slabCount: 2, node: nil, hugePages: .off)
            let slab = pool.acquire()!
            pool.release(slab)
            pool.release(slab)
        }
    }
}

/// The test's per-slab ownership atomics, shared with the worker threads.
private final class Holders: @unchecked Sendable {
    let slots: UnsafeMutablePointer<Atomic<Int>>
    let count: Int
    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        for index in 0..<count { (slots + index).initialize(to: Atomic(0)) }
    }
    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }
}
