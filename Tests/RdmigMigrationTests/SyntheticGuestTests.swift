import Testing
import RdmigSystem
@testable import RdmigMigration

@Suite struct SyntheticGuestTests {
    func configuration(
        size: ByteCount = .mebibytes(16), workingSet: ByteCount? = .mebibytes(4), rate: String = "0",
        pattern: WritePattern = .uniform, writers: Int = 1
    ) throws -> SyntheticGuestConfiguration {
        var configuration = SyntheticGuestConfiguration()
        configuration.guestSize = size
        configuration.workingSet = workingSet
        configuration.dirtyRate = try ByteRate(parsing: rate)
        configuration.pattern = pattern
        configuration.writers = writers
        return configuration
    }

    @Test func contentIsDeterministicPerSeedPageAndVersion() {
        let a = SyntheticGuest.expectedContent(page: 5, version: 3, seed: 1, pageSize: 4096)
        #expect(a == SyntheticGuest.expectedContent(page: 5, version: 3, seed: 1, pageSize: 4096))
        #expect(a != SyntheticGuest.expectedContent(page: 5, version: 4, seed: 1, pageSize: 4096))
        #expect(a != SyntheticGuest.expectedContent(page: 6, version: 3, seed: 1, pageSize: 4096))
        #expect(a != SyntheticGuest.expectedContent(page: 5, version: 3, seed: 2, pageSize: 4096))
        #expect(SyntheticGuest.expectedContent(page: 5, version: 0, seed: 1, pageSize: 4096).allSatisfy { $0 == 0 })
        // Every word differs between two versions, so a torn page cannot pass as either.
        let b = SyntheticGuest.expectedContent(page: 5, version: 4, seed: 1, pageSize: 4096)
        let differing = stride(from: 8, to: 4096, by: 8).filter { a[$0..<$0 + 8] != b[$0..<$0 + 8] }
        #expect(differing.count == 511)
    }

    @Test func writesStayInTheWorkingSetAndUnwrittenPagesStayZero() throws {
        let guest = try SyntheticGuest(configuration: configuration(size: .mebibytes(8), workingSet: .mebibytes(1)))
        guest.writeSynchronously(pages: 2000)
        let versions = guest.versionTable()
        let workingSetPages = 256
        #expect(versions[workingSetPages...].allSatisfy { $0 == 0 })
        #expect((workingSetPages..<guest.region.pageCount).allSatisfy(guest.region.isZeroPage))
        #expect(versions.reduce(0) { $0 + UInt64($1) } == 2000)
        #expect(guest.pagesWritten == 2000)
        #expect(guest.verify().isEqual)
        let page = try #require(versions.firstIndex { $0 > 0 })
        #expect(Array(guest.region.bytes(of: page..<page + 1)) == guest.expectedContent(page: page, version: versions[page]))
        var dirty = DirtyBitmap(pageCount: guest.region.pageCount)
        try guest.dirtyLog.collectAndClear(into: &dirty)
        #expect(dirty.pages == versions.indices.filter { versions[$0] > 0 })
    }

    @Test func verificationFindsAChangedPage() throws {
        let guest = try SyntheticGuest(configuration: configuration(size: .mebibytes(1), workingSet: nil))
        guest.writeSynchronously(pages: 500)
        let versions = guest.versionTable()
        let written = try #require(versions.firstIndex { $0 > 0 })
        guest.region.pagePointer(written).storeBytes(of: 0xFF, toByteOffset: 2000, as: UInt8.self)
        let untouched = try #require(versions.firstIndex { $0 == 0 })
        guest.region.pagePointer(untouched).storeBytes(of: 1, toByteOffset: 0, as: UInt8.self)
        let result = SyntheticGuest.verify(region: guest.region, seed: guest.configuration.seed, versions: versions)
        #expect(result.mismatchedPages == 2)
        #expect(Set(result.firstMismatches) == [written, untouched])
        #expect(!result.isEqual)
    }

    @Test func aCopiedRegionVerifiesWithTheSourcesVersionTable() throws {
        let source = try SyntheticGuest(configuration: configuration(size: .mebibytes(2), workingSet: .mebibytes(1)))
        source.writeSynchronously(pages: 1000)
        let destination = try makeRegion(pages: source.region.pageCount, backing: .memfd(name: "copy"))
        destination.bytes(of: 0..<destination.pageCount).copyMemory(
            from: UnsafeRawBufferPointer(source.region.bytes(of: 0..<source.region.pageCount)))
        let table = SyntheticGuest.decodeVersions(SyntheticGuest.encode(versions: source.versionTable()))
        let versions = try #require(table)
        #expect(SyntheticGuest.verify(region: destination, seed: source.configuration.seed, versions: versions).isEqual)
        #expect(try destination.digest() == (try source.region.digest()))
        // The destination resumes the guest where the source left it.
        let resumed = try SyntheticGuest(configuration: source.configuration, region: destination, versions: versions)
        resumed.writeSynchronously(pages: 100)
        #expect(resumed.verify().isEqual)
    }

    @Test func sequentialWritersWalkTheirPagesInOrder() throws {
        let guest = try SyntheticGuest(configuration: configuration(
            size: .mebibytes(1), workingSet: .kibibytes(400), pattern: .sequential, writers: 2))
        // 100 working-set pages; writer 0 owns the 50 even pages, writer 1 the odd ones.
        guest.writeSynchronously(pages: 60, asWriter: 0)
        guest.writeSynchronously(pages: 5, asWriter: 1)
        let versions = guest.versionTable()
        for page in 0..<100 {
            let expected: UInt32 = page % 2 == 0 ? (page / 2 < 10 ? 2 : 1) : (page / 2 < 5 ? 1 : 0)
            #expect(versions[page] == expected, "page \(page)")
        }
        #expect(versions[100...].allSatisfy { $0 == 0 })
    }

    @Test func hotColdSendsMostWritesToTheHotPart() throws {
        let guest = try SyntheticGuest(configuration: configuration(
            size: .mebibytes(4), workingSet: .mebibytes(4), pattern: .hotCold))
        guest.writeSynchronously(pages: 20_000)
        let versions = guest.versionTable()
        let hotPages = 205  // 20% of 1024 pages, rounded
        let hotWrites = versions[..<hotPages].reduce(0) { $0 + Int($1) }
        let share = Double(hotWrites) / 20_000
        #expect(share > 0.75 && share < 0.85, "hot share \(share)")
        #expect(versions[hotPages...].contains { $0 > 0 }, "cold pages are written too")
    }

    @Test func uniformSpreadsWritesOverTheWorkingSet() throws {
        let guest = try SyntheticGuest(configuration: configuration(size: .mebibytes(1), workingSet: .mebibytes(1)))
        guest.writeSynchronously(pages: 25_600)  // 100 writes per page on average
        let versions = guest.versionTable()
        #expect(versions.allSatisfy { $0 > 50 && $0 < 160 })
    }

    @Test func writersDirtyAtRoughlyTheConfiguredRate() throws {
        // 8 MiB/s for about 0.4 s is about 800 pages; bounds are loose on purpose (shared CPUs).
        let guest = try SyntheticGuest(configuration: configuration(rate: "8MiB/s", writers: 2))
        let clock = ContinuousClock()
        let start = clock.now
        try guest.start()
        sleepMilliseconds(400)
        guest.pause()
        let elapsed = clock.now - start
        let expected = 8.0 * 1024 * 1024 * elapsed.seconds / 4096
        let written = Double(guest.pagesWritten)
        #expect(written > expected * 0.3, "\(written) pages in \(elapsed), expected about \(expected)")
        #expect(written < expected * 1.5 + 64, "\(written) pages in \(elapsed), expected about \(expected)")
        #expect(guest.bytesDirtied == guest.pagesWritten * 4096)
        guest.stop()
        #expect(guest.verify().isEqual)
    }

    @Test func pauseStopsEveryWriteUntilResume() throws {
        let guest = try SyntheticGuest(configuration: configuration(rate: "64MiB/s", writers: 2))
        try guest.start()
        sleepMilliseconds(50)
        guest.pause()
        #expect(guest.isPaused)
        let pages = guest.pagesWritten
        let versions = guest.versionTable()
        let digest = try guest.region.digest()
        sleepMilliseconds(100)
        #expect(guest.pagesWritten == pages)
        #expect(guest.versionTable() == versions)
        #expect(try guest.region.digest() == digest)
        #expect(guest.verify().isEqual, "no writer was caught mid-page")
        guest.resume()
        sleepMilliseconds(100)
        #expect(guest.pagesWritten > pages, "writes restart after resume")
        guest.stop()
    }

    @Test func throttleSleepFollowsQEMUsCPUThrottle() {
        // QEMU: sleep pct/(1-pct) of a 10 ms timeslice; 50% sleeps as long as it runs.
        #expect(SyntheticGuestWriters.throttleSleep(percent: 0) == 0)
        #expect(abs(SyntheticGuestWriters.throttleSleep(percent: 20) - 0.0025) < 1e-12)
        #expect(abs(SyntheticGuestWriters.throttleSleep(percent: 50) - 0.010) < 1e-12)
        #expect(abs(SyntheticGuestWriters.throttleSleep(percent: 99) - 0.990) < 1e-12)
    }

    @Test func throttleSlowsTheWritersDown() throws {
        // At 99% a writer runs 10 ms per second: far below the rate it is allowed. Only an
        // upper bound is checked, so a busy machine (fewer writes) cannot fail it.
        let guest = try SyntheticGuest(configuration: configuration(rate: "64MiB/s"))
        guest.setThrottle(percent: 99)
        #expect(guest.throttlePercent == 99)
        let clock = ContinuousClock()
        let start = clock.now
        try guest.start()
        sleepMilliseconds(200)
        guest.pause()
        let allowed = 64.0 * 1024 * 1024 * (clock.now - start).seconds / 4096
        #expect(Double(guest.pagesWritten) < allowed * 0.35, "\(guest.pagesWritten) pages, \(allowed) allowed unthrottled")
        guest.stop()
        guest.setThrottle(percent: 150)
        #expect(guest.throttlePercent == 99)
        guest.setThrottle(percent: -5)
        #expect(guest.throttlePercent == 0)
    }

    @Test func idleGuestWritesNothing() throws {
        let guest = try SyntheticGuest(configuration: configuration(rate: "0"))
        try guest.start()
        sleepMilliseconds(30)
        guest.stop()
        #expect(guest.pagesWritten == 0)
        var dirty = DirtyBitmap(pageCount: guest.region.pageCount)
        #expect(try guest.dirtyLog.collectAndClear(into: &dirty) == 0)
    }

    @Test func invalidConfigurationsAreRefused() throws {
        var bad = try configuration()
        bad.workingSet = .mebibytes(32)
        #expect {
            _ = try SyntheticGuest(configuration: bad)
        } throws: { error in
            (error as? SyntheticGuestError)?.description.contains("lower working-set") == true
        }
        let region = try makeRegion(pages: 8)
        #expect(throws: SyntheticGuestError.self) {
            _ = try SyntheticGuest(configuration: configuration(), region: region, versions: nil)
        }
    }
}
