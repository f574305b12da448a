#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Testing

@Suite struct PageFaultingTests {
    /// An anonymous private mapping, unmapped when the value goes away.
    final class Mapping {
        let address: UnsafeMutableRawPointer
        let length: Int

        init(_ length: Int, protection: Int32 = PROT_READ | PROT_WRITE) throws {
            let address = try #require(mmap(nil, length, protection, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
            try #require(address != MAP_FAILED, "mmap of \(length) bytes failed: errno \(errno)")
            self.address = address
            self.length = length
        }

        deinit { munmap(address, length) }

        /// Pages that are not resident (mincore).
        func nonResidentPages() throws -> Int {
            let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
            var vector = [UInt8](repeating: 0, count: (length + pageSize - 1) / pageSize)
            try #require(mincore(address, length, &vector) == 0, "mincore failed: errno \(errno)")
            return vector.filter { $0 & 1 == 0 }.count
        }
    }

    @Test(arguments: [1, 3, 8])
    func populatingOnThreadsFaultsEveryPageInUpToTheLastOne(threads: Int) throws {
        // Not a multiple of the slice alignment: the last slice is short and must still be done.
        let mapping = try Mapping(3 * PageFaulting.minimumSliceBytes + 12 * 4096)
        #expect(try mapping.nonResidentPages() > 0)
        let populated = try PageFaulting.populate(mapping.address, length: mapping.length, threads: threads)
        #expect(populated)
        #expect(try mapping.nonResidentPages() == 0)
        let bytes = UnsafeRawBufferPointer(start: mapping.address, count: mapping.length)
        #expect(bytes[0] == 0 && bytes[mapping.length - 1] == 0 && bytes[mapping.length / 2] == 0)
    }

    @Test func workersPinnedToOneCPUStillFaultEveryPageIn() throws {
        let cpus = try SystemThread.currentAffinity()
        let mapping = try Mapping(2 * PageFaulting.minimumSliceBytes)
        let populated = try PageFaulting.populate(mapping.address, length: mapping.length, threads: 2, cpus: [cpus[0]])
        #expect(populated)
        #expect(try mapping.nonResidentPages() == 0)
    }

    @Test func readFaultingPopulatesWhatCannotBeWriteFaulted() throws {
        let mapping = try Mapping(2 * PageFaulting.minimumSliceBytes, protection: PROT_READ)
        let populated = try PageFaulting.populate(mapping.address, length: mapping.length, threads: 2, forWriting: false)
        #expect(populated)
        #expect(try mapping.nonResidentPages() == 0)
    }

    @Test func aMappingTheKernelCannotWriteFaultIsLeftToTheCaller() throws {
        let mapping = try Mapping(2 * PageFaulting.minimumSliceBytes, protection: PROT_READ)
        let onThreads = try PageFaulting.populate(mapping.address, length: mapping.length, threads: 2)
        let onThisThread = try PageFaulting.populate(mapping.address, length: 4096, threads: 1)
        #expect(!onThreads && !onThisThread)
    }
}
