#if canImport(Glibc)
import Glibc
#endif
import CNUMA
import RdmigSystem

/// Anonymous memory bound to one NUMA node, backed by huge pages when it can be, locked in
/// RAM and faulted in before use; unlocked and unmapped when the value goes away.
///
/// The order of the steps is what makes placement and errors right:
/// 1. `mmap` without MAP_POPULATE, so that no page is faulted before the policy is set;
/// 2. `mbind(MPOL_BIND)` to the node: pages faulted from now on come from that node;
/// 3. `mlock2(MLOCK_ONFAULT)`: the kernel checks RLIMIT_MEMLOCK for the whole range now
///    (mm/mlock.c do_mlock) but faults nothing yet, so a too small limit fails fast and is
///    told apart from a failure to get pages;
/// 4. `madvise(MADV_POPULATE_WRITE)` (Linux 5.14) writes-faults every page; a hugetlb range
///    whose node has no free huge page fails here with ENOMEM instead of SIGBUS on first
///    touch, which is what lets the pool fall back to smaller pages.
/// On kernels without MADV_POPULATE_WRITE a plain `mlock` populates the range instead
/// (mm/gup.c populate_vma_page_range, write faults for private writable mappings).
public struct PinnedMemory: ~Copyable {
    public let base: UnsafeMutableRawPointer
    /// Bytes asked for.
    public let length: Int
    /// Bytes mapped and locked: `length` rounded up to the page size.
    public let mappedLength: Int
    /// The node the pages are bound to; nil when no binding was asked for.
    public let node: Int?
    public let pageSize: PageSize
    /// Why a larger page size was not used although the policy allowed it (to be logged);
    /// nil when the policy's first choice was used or huge pages are off.
    public let fallbackReason: String?

    /// The whole memory, for registering it with a transport once.
    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: length)
    }

    /// Maps, binds, locks and pre-faults `length` bytes.
    ///
    /// - Parameters:
    ///   - node: bind to this node (it must exist, see `MachineTopology.chooseNode`); nil
    ///     leaves the kernel's default (local) policy.
    ///   - hugePages: which page sizes to try; each one that fails adds to `fallbackReason`.
    ///   - sysfs: where huge page and free memory counts are read.
    public init(
        length: Int, node: Int?, hugePages: HugePagePolicy = .auto, sysfs: SysfsTree = SysfsTree()
    ) throws(MemoryError) {
        guard length > 0 else { throw .invalidPoolGeometry("cannot pin an empty region (length 0)") }
        var reasons: [String] = []
        let candidates = hugePages.candidates(forLength: UInt64(length))
        for size in candidates {
            let mapped = Int(size.roundUp(UInt64(length)))
            if size.isHuge, let shortage = Self.hugePageShortage(size, pages: mapped / Int(size.bytes), node: node, sysfs: sysfs) {
                reasons.append(shortage)
                continue
            }
            if !size.isHuge, let node, let memory = SysfsLocality(sysfs: sysfs).memory(ofNode: node),
               memory.free < UInt64(mapped)
            {
                // MPOL_BIND cannot spill to another node: faulting more than is free would
                // wake the OOM killer instead of failing.
                throw .invalidPoolGeometry(
                    "node \(node) has \(ByteCount(memory.free).humanReadable) free, less than the "
                        + "\(ByteCount(UInt64(mapped)).humanReadable) pool: use a smaller pool-size or another node")
            }
            do {
                let pointer = try Self.map(length: mapped, pageSize: size, node: node)
                base = pointer
                self.length = length
                mappedLength = mapped
                self.node = node
                pageSize = size
                fallbackReason = reasons.isEmpty ? nil : "\(size) pages: " + reasons.joined(separator: "; ")
                return
            } catch let error {
                if case .memlockLimit = error { throw error }
                if !size.isHuge { throw error }
                reasons.append("\(size) huge pages failed: \(error)")
            }
        }
        throw .invalidPoolGeometry("no page size could be used for \(length) bytes: " + reasons.joined(separator: "; "))
    }

    deinit {
        munlock(base, mappedLength)
        munmap(base, mappedLength)
    }

    /// nil when enough huge pages of `size` look free for `pages` of them, else the reason.
    static func hugePageShortage(_ size: PageSize, pages: Int, node: Int?, sysfs: SysfsTree) -> String? {
        guard let systemWide = HugePageCount.systemWide(sysfs: sysfs).first(where: { $0.pageSize == size }) else {
            return "the kernel offers no \(size) huge pages (no \(size.sysfsDirectory) in /sys/kernel/mm/hugepages)"
        }
        var available = systemWide.available
        var place = "on the machine"
        if let node {
            let onNode = HugePageCount.onNode(node, sysfs: sysfs).first(where: { $0.pageSize == size })?.free ?? 0
            available = min(available, onNode)
            place = "on node \(node)"
        }
        guard available < pages else { return nil }
        let hint = systemWide.total == 0
            ? " (none configured: set vm.nr_hugepages or hugepagesz=/hugepages= on the kernel command line)"
            : ""
        return "\(available) free \(size) huge pages \(place), \(pages) needed\(hint)"
    }

    /// Steps 1-4 above; unmaps again on any failure.
    private static func map(length: Int, pageSize: PageSize, node: Int?) throws(MemoryError) -> UnsafeMutableRawPointer {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | pageSize.mmapFlags
        let raw = mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let raw, raw != MAP_FAILED else {
            throw .system(SystemCallError(
                call: "mmap", errno: SystemCall.currentErrno(),
                context: "\(ByteCount(UInt64(length)).humanReadable) of \(pageSize) pages"))
        }
        do throws(MemoryError) {
            if let node { try bind(raw, length: length, to: node) }
            let populatedByLock = try lock(raw, length: length)
            if !populatedByLock { try populate(raw, length: length, pageSize: pageSize) }
            return raw
        } catch {
            munlock(raw, length)
            munmap(raw, length)
            throw error
        }
    }

    private static func bind(_ address: UnsafeMutableRawPointer, length: Int, to node: Int) throws(MemoryError) {
        try NUMAPolicy.bind(address, length: length, to: node)
    }

    /// Locks the range; returns true when locking also faulted it in (no mlock2 available).
    private static func lock(_ address: UnsafeMutableRawPointer, length: Int) throws(MemoryError) -> Bool {
        if try MemoryLock.onFault(address, length: length) { return false }
        guard mlock(address, length) == 0 else {
            let error = SystemCall.currentErrno()
            if error == ENOMEM || error == EPERM {
                let limit = MemlockLimit.current()
                throw .memlockLimit(requested: UInt64(length), limit: limit.soft, alreadyLocked: limit.locked, errno: error)
            }
            throw .system(SystemCallError(call: "mlock", errno: error))
        }
        return true
    }

    private static func populate(_ address: UnsafeMutableRawPointer, length: Int, pageSize: PageSize) throws(MemoryError) {
        let populated: Bool
        do {
            populated = try PageFaulting.populate(address, length: length)
        } catch {
            throw .system(SystemCallError(
                call: error.call, errno: error.errno,
                context: "pre-faulting \(ByteCount(UInt64(length)).humanReadable) of \(pageSize) pages"))
        }
        if populated { return }
        // Kernel before 5.14: a second, plain mlock faults the locked-on-fault range in.
        if mlock(address, length) == 0 { return }
        throw .system(SystemCallError(call: "mlock", errno: SystemCall.currentErrno(), context: "pre-faulting the pool"))
    }
}
