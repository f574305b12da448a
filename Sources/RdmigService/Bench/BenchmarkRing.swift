#if canImport(Glibc)
import Glibc
#endif
import RdmigMemory
import RdmigSystem

/// The memory one benchmark process moves bytes from (sender) or into (receiver): one slot
/// of `message-size` per write in flight. Built once per process, before any run, so that
/// allocating, pinning and pre-faulting stay outside the timed part; both kinds are fully
/// faulted in before the first run (the sender fills its ring with a pattern, the receiver
/// zeroes its window), so the runs compare placement, pinning and page size, not page faults.
final class BenchmarkRing {
    let bytes: UnsafeMutableRawBufferPointer
    let report: BenchmarkBufferReport
    /// Keeps the pinned memory alive; nil for malloc.
    private let pool: BufferPool?

    /// - Parameter role: "sender" or "receiver", for error messages.
    init(kind: BenchmarkBufferKind, slotSize: Int, slots: Int, node: NodeSelection, hugePages: HugePagePolicy,
         device: String?, role: String) throws(RdmigCommandError) {
        let size = slotSize * slots
        switch kind {
        case .malloc:
            bytes = .allocate(byteCount: size, alignment: 4096)
            pool = nil
            report = BenchmarkBufferReport(
                kind: .malloc, size: UInt64(size), pageSize: UInt64(sysconf(Int32(_SC_PAGESIZE))), node: nil,
                nodeReason: "not bound: the kernel places each page where it is first touched",
                lockedBytes: 0, pageSizeReason: Self.transparentHugePagesNote(), fallbackReason: nil)
        case .pool:
            let built: BufferPool
            do throws(MemoryError) {
                let choice = try MachineTopology.discover().chooseNode(node, device: device)
                built = try BufferPool(
                    slabSize: slotSize, slabCount: slots, node: choice.node, hugePages: hugePages, nodeChoice: choice)
            } catch {
                throw RdmigCommandError(Self.poolFailure(error, role: role, slotSize: slotSize, slots: slots))
            }
            pool = built
            bytes = built.bytes
            report = BenchmarkBufferReport(
                kind: .pool, size: UInt64(size), pageSize: built.pageSize.bytes, node: built.node,
                nodeReason: built.nodeChoice?.reason, lockedBytes: UInt64(built.lockedBytes),
                pageSizeReason: built.fallbackReason == nil ? "huge pages \(hugePages)" : nil,
                fallbackReason: built.fallbackReason)
        }
    }

    deinit {
        if pool == nil { bytes.deallocate() }
    }

    /// "--buffers pool: building the sender's 16.00 MiB ring (256 slots of 64KiB) failed: memlock
    /// limit 8.00 MiB is below the 16.00 MiB pool: raise LimitMEMLOCK …; or … --buffers malloc"
    static func poolFailure(_ error: MemoryError, role: String, slotSize: Int, slots: Int) -> String {
        var message = "--buffers pool: building the \(role)'s \(ByteCount(UInt64(slotSize * slots)).humanReadable) ring "
            + "(\(slots) slots of \(ByteCount(UInt64(slotSize)))) failed: \(error)"
        if case .memlockLimit = error {
            message += "; or measure without pinning: --buffers malloc"
        }
        return message
    }

    /// malloc gets huge pages only through transparent huge pages; neither kind madvises
    /// MADV_HUGEPAGE, so in the kernel's `madvise` mode (and `never`) both use base pages.
    static func transparentHugePagesNote(sysfs: SysfsTree = SysfsTree()) -> String {
        guard let mode = sysfs.contents("kernel/mm/transparent_hugepage/enabled").flatMap(selectedMode) else {
            return "transparent huge pages: unknown"
        }
        return mode == "always"
            ? "transparent huge pages 'always': parts may be backed by 2 MiB pages"
            : "transparent huge pages '\(mode)': not used without MADV_HUGEPAGE"
    }

    /// The bracketed choice of a sysfs mode file: "always [madvise] never" gives "madvise".
    static func selectedMode(_ text: String) -> String? {
        text.split(separator: " ").first { $0.hasPrefix("[") && $0.hasSuffix("]") }
            .map { String($0.dropFirst().dropLast()) }
    }
}

/// What one process's benchmark buffer is, for the text and JSON reports.
struct BenchmarkBufferReport: Codable, Equatable, Sendable {
    var kind: BenchmarkBufferKind
    var size: UInt64
    /// Bytes per page backing the buffer.
    var pageSize: UInt64
    var node: Int?
    var nodeReason: String?
    var lockedBytes: UInt64
    /// Why this page size, when no huge page size was refused.
    var pageSizeReason: String?
    /// Why huge pages were not used although the policy allowed them.
    var fallbackReason: String?

    enum CodingKeys: String, CodingKey {
        case kind, size, node
        case pageSize = "page-size"
        case nodeReason = "node-reason"
        case lockedBytes = "locked-bytes"
        case pageSizeReason = "page-size-reason"
        case fallbackReason = "fallback-reason"
    }

    /// One line: "pool, 8 MiB, 4 KiB pages (…), node 0 (the only node), 8 MiB locked".
    var text: String {
        var parts = ["\(kind.rawValue), \(ByteCount(size).humanReadable)"]
        let page = PageSize(rawValue: pageSize).map(\.description) ?? "\(pageSize) B"
        if let fallbackReason {
            parts.append(fallbackReason)
        } else if let pageSizeReason {
            parts.append("\(page) pages (\(pageSizeReason))")
        } else {
            parts.append("\(page) pages")
        }
        parts.append(node.map { "node \($0)" + (nodeReason.map { " (\($0))" } ?? "") } ?? (nodeReason ?? "no node binding"))
        parts.append(lockedBytes > 0 ? "\(ByteCount(lockedBytes).humanReadable) locked" : "not locked")
        return parts.joined(separator: ", ")
    }
}
