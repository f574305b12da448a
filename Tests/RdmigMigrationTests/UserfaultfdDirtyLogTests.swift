#if canImport(Glibc)
import Glibc
#endif
import Testing
import CRdmigShims
import RdmigSystem
@testable import RdmigMigration

/// These tests run the real kernel interface. Where the kernel or the process cannot use
/// userfaultfd write protection, each test checks that the error says so clearly instead.
@Suite struct UserfaultfdDirtyLogTests {
    /// Decodes an _IOC request number (include/uapi/asm-generic/ioctl.h: nr 8 bits, type 8,
    /// size 14, direction 2).
    static func decode(_ request: UInt) -> (direction: UInt, size: UInt, type: UInt, number: UInt) {
        ((request >> 30) & 3, (request >> 16) & 0x3FFF, (request >> 8) & 0xFF, request & 0xFF)
    }

    @Test func requestNumbersEncodeTheStructSizesSwiftSees() {
        let readWrite: UInt = 3
        let api = Self.decode(rdmig_uffdio_api_request())
        #expect(api == (readWrite, UInt(MemoryLayout<uffdio_api>.size), 0xAA, 0x3F))
        let register = Self.decode(rdmig_uffdio_register_request())
        #expect(register == (readWrite, UInt(MemoryLayout<uffdio_register>.size), 0xAA, 0x00))
        let writeProtect = Self.decode(rdmig_uffdio_writeprotect_request())
        #expect(writeProtect == (readWrite, UInt(MemoryLayout<uffdio_writeprotect>.size), 0xAA, 0x06))
        let unregister = Self.decode(rdmig_uffdio_unregister_request())
        #expect(unregister == (2, UInt(MemoryLayout<uffdio_range>.size), 0xAA, 0x01))
        #expect(MemoryLayout<uffd_msg>.size == 32)
    }

    /// nil when tracking works here; otherwise the error, after checking it is a clear one.
    func unavailableReason() -> DirtyLogError? {
        guard let error = UserfaultfdDirtyLog.probe() else { return nil }
        switch error {
        case .userfaultfdUnavailable, .userfaultfdNotPermitted, .featureMissing:
            #expect(error.description.contains("userfaultfd"))
        default:
            Issue.record("unexpected probe failure: \(error)")
        }
        return error
    }

    func writeByte(_ region: GuestMemoryRegion, page: Int, _ value: UInt8 = 0x5A) {
        region.pagePointer(page).storeBytes(of: value, toByteOffset: 100, as: UInt8.self)
    }

    func expectTracksWrites(backing: GuestMemoryBacking) throws {
        guard unavailableReason() == nil else { return }
        let region = try makeRegion(pages: 96, backing: backing)
        writeByte(region, page: 7)  // populated before tracking starts
        let log = try UserfaultfdDirtyLog(region: region)
        try log.start()
        for page in [3, 10, 11, 12, 63, 64, 95] { writeByte(region, page: page) }
        writeByte(region, page: 10, 0x11)  // a second write to a page already unprotected
        var bitmap = DirtyBitmap(pageCount: region.pageCount)
        let reported = try log.collectAndClear(into: &bitmap)
        #expect(bitmap.pages == [3, 10, 11, 12, 63, 64, 95])
        #expect(reported == 7)
        #expect(log.faultsHandled >= 7)

        var second = DirtyBitmap(pageCount: region.pageCount)
        try log.collectAndClear(into: &second)
        #expect(second.isEmpty, "nothing was written since the last collection")

        // Collected pages are protected again: the next write to them is caught.
        writeByte(region, page: 10)
        writeByte(region, page: 50)
        try log.collectAndClear(into: &second)
        #expect(second.pages == [10, 50])
        #expect(region.pagePointer(10).load(fromByteOffset: 100, as: UInt8.self) == 0x5A)
        log.stop()
        writeByte(region, page: 20)  // no protection left: must not block
        #expect(throws: DirtyLogError.notTracking) { try log.collectAndClear(into: &second) }
    }

    @Test func tracksWritesToAnonymousMemory() throws {
        try expectTracksWrites(backing: .anonymous)
    }

    @Test func tracksWritesToMemfdMemory() throws {
        try expectTracksWrites(backing: .memfd(name: "rdmig-uffd-test"))
    }

    @Test func aFileOnADiskFileSystemIsRefusedWithTheMemoryTypeNamed() throws {
        guard unavailableReason() == nil else { return }
        let directory = TemporaryDirectory(under: "/tmp")
        defer { directory.remove() }
        let region = try makeRegion(pages: 8, backing: .file(path: directory.file("ram"), create: true))
        if fileSystemType(of: "/tmp") == "tmpfs" {
            // /tmp is tmpfs on this machine: shmem supports write protection, so tracking works.
            let log = try UserfaultfdDirtyLog(region: region)
            try log.start()
            writeByte(region, page: 1)
            var bitmap = DirtyBitmap(pageCount: 8)
            try log.collectAndClear(into: &bitmap)
            #expect(bitmap.pages == [1])
            return
        }
        #expect {
            _ = try UserfaultfdDirtyLog(region: region)
        } throws: { error in
            guard let error = error as? DirtyLogError, case .memoryTypeNotSupported(0, _, let cause) = error else {
                return false
            }
            return cause.errno == EINVAL && error.description.contains("memfd")
                && error.description.contains("file \(directory.file("ram"))")
        }
    }

    @Test func agreesWithTheSyntheticGuestsOwnLogWhileWritersRun() throws {
        guard unavailableReason() == nil else { return }
        var configuration = SyntheticGuestConfiguration()
        configuration.guestSize = .mebibytes(8)
        configuration.workingSet = .mebibytes(2)
        configuration.dirtyRate = try ByteRate(parsing: "16MiB/s")
        configuration.writers = 2
        let guest = try SyntheticGuest(configuration: configuration)
        let log = try UserfaultfdDirtyLog(region: guest.region)
        try log.start()
        try guest.dirtyLog.start()
        try guest.start()
        var fromFaults = DirtyBitmap(pageCount: guest.region.pageCount)
        var fromWriters = DirtyBitmap(pageCount: guest.region.pageCount)
        for _ in 0..<3 {
            sleepMilliseconds(60)
            guest.pause()
            fromFaults.removeAll()
            fromWriters.removeAll()
            try log.collectAndClear(into: &fromFaults)
            try guest.dirtyLog.collectAndClear(into: &fromWriters)
            #expect(fromFaults == fromWriters)
            guest.resume()
        }
        guest.stop()
        log.stop()
        #expect(guest.pagesWritten > 0)
        #expect(guest.verify().isEqual)
    }

    @Test func errorsSayWhatToDo() {
        let permission = DirtyLogError.userfaultfdNotPermitted(SystemCallError(call: "userfaultfd", errno: EPERM), sysctl: "0")
        #expect(permission.description.contains("vm.unprivileged_userfaultfd"))
        #expect(permission.description.contains("/dev/userfaultfd"))
        let missing = DirtyLogError.userfaultfdUnavailable(SystemCallError(call: "userfaultfd", errno: ENOSYS))
        #expect(missing.description.contains("CONFIG_USERFAULTFD"))
    }
}
