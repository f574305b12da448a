#if canImport(Glibc)
import Glibc
#endif
import Testing
import RdmigSystem
@testable import RdmigMigration

@Suite struct GuestMemoryTests {
    @Test func anonymousRegionStartsZeroAndPagePointersAreContiguous() throws {
        let region = try makeRegion(pages: 16)
        #expect(region.pageCount == 16)
        #expect(region.fileDescriptor == -1)
        #expect(region.pagePointer(1) - region.pagePointer(0) == 4096)
        #expect((0..<16).allSatisfy(region.isZeroPage))
        region.pagePointer(5).storeBytes(of: 1, toByteOffset: 4095, as: UInt8.self)
        #expect(!region.isZeroPage(5))
        #expect(region.isZeroPage(4))
        #expect(region.bytes(of: 2..<4).count == 8192)
    }

    @Test func neverPopulatedAnonymousPagesAreFoundWithoutTouchingThem() throws {
        let region = try GuestMemoryRegion(layout: GuestMemoryRegionLayout(id: 0, guestPhysicalBase: 0, length: 64 * 4096, pageSize: 4096))
        region.pagePointer(3).storeBytes(of: 1, as: UInt8.self)
        region.pagePointer(10).storeBytes(of: 2, as: UInt8.self)
        // A read maps the shared zero page: populated, though still zero.
        _ = region.pagePointer(20).load(as: UInt8.self)
        let unpopulated = try #require(region.unpopulatedPages())
        #expect(!unpopulated.contains(3) && !unpopulated.contains(10) && !unpopulated.contains(20))
        #expect(unpopulated.contains(0) && unpopulated.contains(4) && unpopulated.contains(63))
        #expect(unpopulated.count == 61)
        let shared = try GuestMemoryRegion(layout: GuestMemoryRegionLayout(id: 1, guestPhysicalBase: 0, length: 16 * 4096, pageSize: 4096),
                                           backing: .memfd(name: "rdmig-test"))
        #expect(shared.unpopulatedPages() == nil, "shared memory may hold data the pagemap does not show")
    }

    @Test func memfdRegionIsSharedThroughItsDescriptor() throws {
        let region = try makeRegion(pages: 4, backing: .memfd(name: "rdmig-test"))
        #expect(region.fileDescriptor >= 0)
        region.pagePointer(2).storeBytes(of: 0xABCD_EF01, toByteOffset: 8, as: UInt32.self)
        // A second mapping of the same memfd sees the write: the memory really is shared.
        let other = mmap(nil, 4 * 4096, PROT_READ, MAP_SHARED, region.fileDescriptor, 0)!
        defer { munmap(other, 4 * 4096) }
        #expect(other.load(fromByteOffset: 2 * 4096 + 8, as: UInt32.self) == 0xABCD_EF01)
    }

    @Test func fileRegionKeepsContentAcrossMappings() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("guest-ram")
        do {
            let region = try makeRegion(pages: 4, backing: .file(path: path, create: true))
            region.pagePointer(3).storeBytes(of: 42, toByteOffset: 0, as: UInt64.self)
        }
        let again = try makeRegion(pages: 4, backing: .file(path: path))
        #expect(again.pagePointer(3).load(as: UInt64.self) == 42)
    }

    @Test func aShortFileIsRefusedWithSizesAndTheFix() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("short")
        _ = try makeRegion(pages: 1, backing: .file(path: path, create: true))
        #expect {
            _ = try makeRegion(pages: 4, backing: .file(path: path))
        } throws: { error in
            guard let error = error as? GuestMemoryError, case .fileTooShort(_, _, 4096, 16384) = error else { return false }
            return error.description.contains("create")
        }
    }

    @Test func invalidLayoutsAreRefusedWithTheRule() {
        let cases: [(GuestMemoryRegionLayout, String)] = [
            (GuestMemoryRegionLayout(id: 1, length: 4096, pageSize: 3000), "power of two"),
            (GuestMemoryRegionLayout(id: 1, length: 4096, pageSize: 1024), "smaller than the host page size"),
            (GuestMemoryRegionLayout(id: 1, length: 6000, pageSize: 4096), "not a multiple"),
            (GuestMemoryRegionLayout(id: 1, length: 0, pageSize: 4096), "length is 0"),
            (GuestMemoryRegionLayout(id: 1, guestPhysicalBase: 100, length: 4096), "not page aligned"),
        ]
        for (layout, words) in cases {
            #expect {
                try layout.validate()
            } throws: { error in
                (error as? GuestMemoryError)?.description.contains(words) == true
            }
        }
    }

    @Test func missingHugePagesGiveAClearError() throws {
        // This machine has no huge pages reserved; where some are, the mapping simply works.
        let layout = GuestMemoryRegionLayout(id: 7, length: 2 << 20, pageSize: 2 << 20)
        do {
            let region = try GuestMemoryRegion(layout: layout, hugePages: true)
            #expect(region.usesHugePages)
        } catch {
            guard case .hugePagesUnavailable = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(error.description.contains("nr_hugepages"))
        }
    }

    @Test func pinningASmallRegionLocksIt() throws {
        let region = try makeRegion(pages: 64)
        try region.pin()
        #expect(region.isPinned)
        region.unpin()
        #expect(!region.isPinned)
    }

    /// Locking 160 MiB needs CAP_IPC_LOCK (root) or a memlock limit that large.
    static let mayLock160MiB = geteuid() == 0 || (GuestMemoryRegion.memoryLockLimit() ?? 0) >= 161 << 20

    @Test(.enabled(if: mayLock160MiB, "needs root or a memlock limit of 161 MiB (ulimit -l)"))
    func pinningOnSeveralThreadsFaultsEveryPageInAndLocksIt() throws {
        let region = try makeRegion(pages: (160 << 20) / 4096 + 3)
        try region.pin(threads: 4)
        #expect(region.isPinned)
        var vector = [UInt8](repeating: 0, count: region.pageCount)
        #expect(mincore(region.baseAddress, region.length, &vector) == 0)
        #expect(vector.allSatisfy { $0 & 1 == 1 }, "\(vector.filter { $0 & 1 == 0 }.count) pages are not resident")
        region.unpin()
    }

    /// 130 MiB of default-size huge pages free, and the right to lock them.
    static let mayPinHugePages: Bool = {
        let info = GuestMemoryRegion.hugePageInfo()
        guard let free = info.free, let size = info.pageSize, size == 2 << 20 else { return false }
        return free * size >= 130 << 20 && mayLock160MiB
    }()

    @Test(.enabled(if: mayPinHugePages, "needs 65 free 2 MiB huge pages (vm.nr_hugepages) and root or a memlock limit of 161 MiB"))
    func aHugePageRegionIsFaultedInOnThreadsInWholeHugePages() throws {
        // Guest pages of 4 KiB in a hugetlb mapping: slices on huge-page boundaries, all faulted.
        let layout = GuestMemoryRegionLayout(id: 3, length: 130 << 20, pageSize: 4096)
        let region = try GuestMemoryRegion(layout: layout, hugePages: true)
        let populated = try PageFaulting.populate(region.baseAddress, length: region.length, threads: 2, alignment: 2 << 20)
        #expect(populated, "MADV_POPULATE_WRITE refused huge-page-aligned slices of a hugetlb mapping")
        try region.pin(threads: 2)
        #expect(region.isPinned)
        region.unpin()
    }

    @Test func memlockErrorNamesTheLimitAndTheFix() {
        let error = GuestMemoryError.memoryLockFailed(
            region: 0, length: 1 << 30, limit: 8 << 20, SystemCallError(call: "mlock", errno: ENOMEM))
        #expect(error.description.contains("1GiB"))
        #expect(error.description.contains("8MiB"))
        #expect(error.description.contains("RLIMIT_MEMLOCK"))
        #expect(error.description.contains("CAP_IPC_LOCK"))
        #expect(GuestMemoryRegion.memoryLockLimit() != nil)
    }

    @Test func digestsAgreeForEqualContentAndDifferForAnyChangedByte() throws {
        let a = try makeRegion(pages: 600)          // 2.3 MiB: three chunks, the last one short
        let b = try makeRegion(pages: 600, backing: .memfd(name: "digest"))
        for page in stride(from: 0, to: 600, by: 7) {
            SyntheticPageContent.fill(a.pagePointer(page), pageSize: 4096, seed: 9, page: page, version: 3)
            SyntheticPageContent.fill(b.pagePointer(page), pageSize: 4096, seed: 9, page: page, version: 3)
        }
        let digestA = try a.digest()
        #expect(digestA == (try b.digest()))
        #expect(digestA == (try a.digest(threads: 2)))
        b.pagePointer(599).storeBytes(of: 1, toByteOffset: 4095, as: UInt8.self)
        #expect(digestA != (try b.digest()))
        #expect(a.digestChunkCount == 3)
        #expect(a.chunkHashes(0..<2) == b.chunkHashes(0..<2))
    }

    @Test func guestMemoryMapsLayoutsPinsAndLocatesAddresses() throws {
        let layouts = [
            GuestMemoryRegionLayout(id: 2, guestPhysicalBase: 1 << 20, length: 8 * 4096),
            GuestMemoryRegionLayout(id: 1, guestPhysicalBase: 0, length: 4 * 4096),
        ]
        let memory = try GuestMemory.map(layouts: layouts, pin: true)
        #expect(memory.regions.map(\.id) == [1, 2])
        #expect(memory.regions.allSatisfy { $0.isPinned })
        #expect(memory.totalBytes == 12 * 4096)
        let hit = try #require(memory.locate(guestPhysical: (1 << 20) + 5 * 4096 + 17))
        #expect(hit.region.id == 2 && hit.page == 5)
        #expect(memory.locate(guestPhysical: 4 * 4096) == nil)
        #expect(throws: GuestMemoryError.unknownRegion(9)) { try memory.region(id: 9) }
    }

    @Test func overlappingOrDuplicateRegionsAreRefused() throws {
        let a = try makeRegion(id: 1, pages: 4)
        let b = try makeRegion(id: 2, base: 2 * 4096, pages: 4)
        #expect(throws: GuestMemoryError.overlappingRegions(1, 2)) { try GuestMemory(regions: [a, b]) }
        let c = try makeRegion(id: 1, pages: 4)
        #expect(throws: GuestMemoryError.duplicateRegion(1)) { try GuestMemory(regions: [a, c]) }
    }
}
