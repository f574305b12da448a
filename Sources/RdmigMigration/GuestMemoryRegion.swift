#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import RdmigMemory
import RdmigSystem
import CRdmigShims

/// One mapped region of guest memory: the source's pages to send, or the destination's
/// window that the page channel writes into.
///
/// A final class rather than a `~Copyable` struct because several threads share it (the
/// guest's writers, the dirty-log handler, the page channel's poster); the mapping lives
/// until the last reference goes, and `deinit` unmaps it and closes its descriptor.
public final class GuestMemoryRegion: @unchecked Sendable, CustomStringConvertible {
    public let layout: GuestMemoryRegionLayout
    public let backing: GuestMemoryBacking
    /// The first byte of the mapping. Valid for the region's lifetime.
    public let baseAddress: UnsafeMutableRawPointer
    /// The memfd or file descriptor behind a shared mapping, -1 for anonymous memory.
    public let fileDescriptor: Int32
    public let usesHugePages: Bool
    private let pinned = Atomic<Bool>(false)

    public var id: UInt32 { layout.id }
    public var guestPhysicalBase: UInt64 { layout.guestPhysicalBase }
    public var length: Int { Int(layout.length) }
    public var pageSize: Int { Int(layout.pageSize) }
    public var pageCount: Int { layout.pageCount }
    public var isPinned: Bool { pinned.load(ordering: .acquiring) }

    /// The host's base page size (sysconf(_SC_PAGESIZE)).
    public static let hostPageSize: Int = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Maps a region of `layout` backed by `backing`. Anonymous and memfd memory starts
    /// zeroed; a file keeps its content. With `hugePages`, anonymous and memfd memory is
    /// mapped with MAP_HUGETLB / MFD_HUGETLB and the call fails clearly where none are reserved.
    public init(
        layout: GuestMemoryRegionLayout, backing: GuestMemoryBacking = .anonymous, hugePages: Bool = false
    ) throws(GuestMemoryError) {
        try layout.validate()
        self.layout = layout
        self.backing = backing
        usesHugePages = hugePages
        (baseAddress, fileDescriptor) = try GuestMemoryRegion.mapping(layout, backing, hugePages: hugePages)
    }

    private static func mapping(
        _ layout: GuestMemoryRegionLayout, _ backing: GuestMemoryBacking, hugePages: Bool
    ) throws(GuestMemoryError) -> (UnsafeMutableRawPointer, Int32) {
        let length = Int(layout.length)
        let protection = PROT_READ | PROT_WRITE
        var descriptor: Int32 = -1
        // Every failure after the descriptor exists closes it before reporting.
        func check<T>(_ body: () throws(SystemCallError) -> T) throws(GuestMemoryError) -> T {
            do throws(SystemCallError) {
                return try body()
            } catch {
                if descriptor >= 0 { close(descriptor) }
                if hugePages, error.call == "mmap" || error.call == "memfd_create",
                   error.errno == ENOMEM || error.errno == EINVAL {
                    let info = GuestMemoryRegion.hugePageInfo()
                    throw .hugePagesUnavailable(
                        region: layout.id, length: layout.length, free: info.free, pageSize: info.pageSize, error)
                }
                throw .mapFailed(region: layout.id, backing: backing.description, length: layout.length, error)
            }
        }
        switch backing {
        case .anonymous:
            var flags = MAP_PRIVATE | MAP_ANONYMOUS
            if hugePages { flags |= MAP_HUGETLB }
            let address = try check { () throws(SystemCallError) in
                try map(length, protection, flags, -1, 0, context: "region \(layout.id)")
            }
            return (address, -1)
        case .memfd(let name):
            // MFD_CLOEXEC 0x1, MFD_HUGETLB 0x4 (include/uapi/linux/memfd.h; glibc hides them
            // from Swift behind _GNU_SOURCE).
            let flags: UInt32 = 0x1 | (hugePages ? 0x4 : 0)
            descriptor = try check { () throws(SystemCallError) in
                let result = rdmig_memfd_create(name, flags)
                if result < 0 {
                    throw SystemCallError(call: "memfd_create", errno: -result, context: "region \(layout.id) '\(name)'")
                }
                return result
            }
            let fd = descriptor
            _ = try check { () throws(SystemCallError) in
                try SystemCall.check("ftruncate", context: "memfd '\(name)' to \(length) bytes") {
                    ftruncate(fd, off_t(length))
                }
            }
            let address = try check { () throws(SystemCallError) in
                try map(length, protection, MAP_SHARED, fd, 0, context: "memfd '\(name)'")
            }
            return (address, fd)
        case .file(let path, let offset, let create):
            let openFlags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0)
            descriptor = try check { () throws(SystemCallError) in
                try SystemCall.check("open", context: path) { open(path, openFlags, 0o600) }
            }
            let fd = descriptor
            var status = stat()
            _ = try check { () throws(SystemCallError) in
                try SystemCall.check("fstat", context: path) { fstat(fd, &status) }
            }
            let needed = offset + layout.length
            if UInt64(status.st_size) < needed {
                guard create else {
                    close(fd)
                    throw .fileTooShort(region: layout.id, path: path, size: UInt64(status.st_size), needed: needed)
                }
                _ = try check { () throws(SystemCallError) in
                    try SystemCall.check("ftruncate", context: "\(path) to \(needed) bytes") {
                        ftruncate(fd, off_t(needed))
                    }
                }
            }
            let address = try check { () throws(SystemCallError) in
                try map(length, protection, MAP_SHARED, fd, off_t(offset), context: path)
            }
            return (address, fd)
        }
    }

    deinit {
        munmap(baseAddress, length)
        if fileDescriptor >= 0 { close(fileDescriptor) }
    }

    private static func map(
        _ length: Int, _ protection: Int32, _ flags: Int32, _ fd: Int32, _ offset: off_t, context: String
    ) throws(SystemCallError) -> UnsafeMutableRawPointer {
        guard let address = mmap(nil, length, protection, flags, fd, offset), address != MAP_FAILED else {
            throw SystemCallError(call: "mmap", errno: SystemCall.currentErrno(), context: context)
        }
        return address
    }

    /// The first byte of page `index`. Bounds-checked with one compare; no other work, so
    /// the page channel may call it per page.
    @inline(__always)
    public func pagePointer(_ index: Int) -> UnsafeMutableRawPointer {
        precondition(index >= 0 && index < pageCount, "page \(index) outside region \(id) (0..<\(pageCount))")
        return baseAddress + index &* pageSize
    }

    /// The bytes of pages `pages` (a run from a dirty bitmap).
    @inline(__always)
    public func bytes(of pages: Range<Int>) -> UnsafeMutableRawBufferPointer {
        precondition(pages.lowerBound >= 0 && pages.upperBound <= pageCount, "pages \(pages) outside region \(id)")
        return UnsafeMutableRawBufferPointer(
            start: baseAddress + pages.lowerBound &* pageSize, count: pages.count &* pageSize)
    }

    /// The page that holds guest-physical address `address`, or nil if it is outside.
    public func pageIndex(ofGuestPhysical address: UInt64) -> Int? {
        guard layout.guestPhysicalRange.contains(address) else { return nil }
        return Int((address - guestPhysicalBase) / layout.pageSize)
    }

    /// True when every byte of page `index` is zero (the page channel sends a marker instead).
    /// Reads 64 bytes per step with an OR-reduction so the loop stops at the first non-zero
    /// block of a written page and vectorises on an all-zero one.
    public func isZeroPage(_ index: Int) -> Bool {
        GuestMemoryRegion.isZero(UnsafeRawPointer(pagePointer(index)), count: pageSize)
    }

    static func isZero(_ start: UnsafeRawPointer, count: Int) -> Bool {
        var offset = 0
        while offset + 64 <= count {
            var accumulated: UInt64 = 0
            for lane in 0..<8 {
                accumulated |= start.loadUnaligned(fromByteOffset: offset + lane * 8, as: UInt64.self)
            }
            if accumulated != 0 { return false }
            offset += 64
        }
        while offset < count {
            if start.load(fromByteOffset: offset, as: UInt8.self) != 0 { return false }
            offset += 1
        }
        return true
    }

    /// Locks the region in RAM (mlock): the destination does this before exporting its
    /// windows, so no page the peer writes into is ever swapped or migrated. Every page is
    /// faulted in first, on up to `threads` threads at once pinned to `cpus` if given, so the
    /// pages come from their node (`PageFaulting`): that is most of
    /// the cost, proportional to the size (1 GiB of anonymous memory: 0.3-0.6 s on one
    /// thread here, ~0.25 s on two, the mlock included). Do it during setup, never during
    /// switchover.
    /// Faults the region in (on `threads` threads pinned to `cpus`) and locks it; with `node`,
    /// anonymous and memfd memory is bound to that NUMA node first, so every page comes from it
    /// (the NIC's, for a destination). A file's pages are the page cache's: they stay where
    /// they are (binding them strictly would fail for pages cached elsewhere).
    ///
    /// With `onFault`, nothing is faulted in now: the region is locked as its pages are first
    /// touched (`mlock2(MLOCK_ONFAULT)`; the memlock limit is still checked for all of it), so
    /// pages that stay zero are never faulted in. Without mlock2 it pins as without `onFault`.
    public func pin(threads: Int = 1, cpus: [Int32] = [], node: Int? = nil, onFault: Bool = false) throws(GuestMemoryError) {
        if isPinned { return }
        var bindable = true
        if case .file = backing { bindable = false }
        if let node, bindable {
            do {
                try NUMAPolicy.bind(baseAddress, length: length, to: node)
            } catch {
                throw .numaBindFailed(region: id, node: node, "\(error)")
            }
        }
        if onFault {
            do {
                if try MemoryLock.onFault(baseAddress, length: length) {
                    pinned.store(true, ordering: .releasing)
                    return
                }
            } catch {
                throw .memoryLockFailed(region: id, length: layout.length, limit: GuestMemoryRegion.memoryLockLimit(),
                                        SystemCallError(call: "mlock2", errno: Self.errno(of: error), context: "MLOCK_ONFAULT, region \(id)"))
            }
        }
        do {
            // A file keeps its pages clean until the peer writes them, as mlock's read faults did.
            var forWriting = true
            if case .file = backing { forWriting = false }
            // Slices start on a page of the mapping, so no two threads fault the same page: a
            // hugetlb mapping's are the default huge page size (MAP_HUGETLB without a size flag).
            let mappingPage = usesHugePages ? Int(GuestMemoryRegion.hugePageInfo().pageSize ?? 1 << 30) : GuestMemoryRegion.hostPageSize
            try PageFaulting.populate(baseAddress, length: length, threads: threads, cpus: cpus,
                                      alignment: max(pageSize, mappingPage), forWriting: forWriting)
        } catch {
            throw .populateFailed(region: id, length: layout.length, error)
        }
        let result = mlock(baseAddress, length)
        if result != 0 {
            let error = SystemCallError(
                call: "mlock", errno: SystemCall.currentErrno(), context: "region \(id), \(length) bytes")
            throw .memoryLockFailed(region: id, length: layout.length, limit: GuestMemoryRegion.memoryLockLimit(), error)
        }
        pinned.store(true, ordering: .releasing)
    }

    private static func errno(of error: MemoryError) -> Int32 {
        switch error {
        case .memlockLimit(_, _, _, let errno): return errno
        case .system(let failure): return failure.errno
        default: return ENOMEM
        }
    }

    /// Undoes `pin()` (unmapping also does).
    public func unpin() {
        guard isPinned else { return }
        munlock(baseAddress, length)
        pinned.store(false, ordering: .releasing)
    }

    /// Fills the region with zero bytes (a destination that discards an aborted migration).
    public func zero() {
        memset(baseAddress, 0, length)
    }

    /// The soft RLIMIT_MEMLOCK in bytes (UInt64.max for unlimited), nil if it cannot be read.
    public static func memoryLockLimit() -> UInt64? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0 else { return nil }
        return limit.rlim_cur == rlim_t.max ? UInt64.max : UInt64(limit.rlim_cur)
    }

    /// HugePages_Free and Hugepagesize from /proc/meminfo, for the error message.
    static func hugePageInfo() -> (free: UInt64?, pageSize: UInt64?) {
        guard let file = fopen("/proc/meminfo", "r") else { return (nil, nil) }
        defer { fclose(file) }
        var free: UInt64?
        var size: UInt64?
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let fields = text.split(whereSeparator: { $0 == " " || $0 == ":" || $0 == "\n" })
            guard fields.count >= 2, let value = UInt64(fields[1]) else { continue }
            if fields[0] == "HugePages_Free" { free = value }
            if fields[0] == "Hugepagesize" { size = value * 1024 }
        }
        return (free, size)
    }

    // MARK: digests

    public var digestChunkSize: Int { max(RegionDigest.chunkSize, pageSize) }
    public var digestChunkCount: Int { (length + digestChunkSize - 1) / digestChunkSize }

    /// XXH3-64 of each chunk in `chunks` (chunk c seeded with c), in order.
    public func chunkHashes(_ chunks: Range<Int>) -> [UInt64] {
        var result = [UInt64](repeating: 0, count: chunks.count)
        result.withUnsafeMutableBufferPointer { hashChunks(chunks, into: $0.baseAddress!) }
        return result
    }

    private func hashChunks(_ chunks: Range<Int>, into output: UnsafeMutablePointer<UInt64>) {
        let chunkSize = digestChunkSize
        for (slot, chunk) in chunks.enumerated() {
            let start = chunk * chunkSize
            let count = min(chunkSize, length - start)
            output[slot] = XXH3.hash(UnsafeRawPointer(baseAddress + start), count: count, seed: UInt64(chunk))
        }
    }

    /// The region's digest, computed by `threads` threads (each hashes a contiguous share of
    /// chunks). Reads all of memory: measured with XXH64 (before protocol v3) 86 ms per GiB on
    /// one thread and 46 ms on two (release build, this 2-CPU machine, a 1 GiB synthetic
    /// guest; XXH3 hashes ~1.8x faster, Perf/README.md), so a 4 GiB guest's digest
    /// alone would exceed a 50 ms downtime limit: keep it out of the downtime where possible.
    public func digest(threads: Int = 1) throws(SystemCallError) -> RegionDigest {
        let chunkCount = digestChunkCount
        let output = UnsafeMutablePointer<UInt64>.allocate(capacity: chunkCount)
        defer { output.deallocate() }
        let workers = max(1, min(threads, chunkCount))
        if workers == 1 {
            hashChunks(0..<chunkCount, into: output)
        } else {
            let share = (chunkCount + workers - 1) / workers
            let target = UnsafeSendablePointer(pointer: output)
            var started: [SystemThread] = []
            var failure: SystemCallError?
            for worker in 1..<workers {
                let lower = min(worker * share, chunkCount)
                let upper = min(lower + share, chunkCount)
                do {
                    started.append(try SystemThread(name: "rdmig-digest-\(worker)") { [self] in
                        self.hashChunks(lower..<upper, into: target.pointer + lower)
                    })
                } catch {
                    failure = error
                    break
                }
            }
            hashChunks(0..<min(share, chunkCount), into: output)
            for thread in started { thread.join() }
            if let failure { throw failure }
        }
        let hashes = Array(UnsafeBufferPointer(start: output, count: chunkCount))
        return RegionDigest.combine(regionID: id, length: layout.length, chunkHashes: hashes)
    }

    public var description: String { "\(layout) backed by \(backing)" }
}
