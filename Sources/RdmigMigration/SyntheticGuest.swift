import RdmigSystem

/// A stand-in for a running VM, for demos, tests and sweeps: guest memory, writer threads
/// that dirty a working set at a set rate and pattern, and the controls a VMM offers
/// migration — pause, resume, throttle.
///
/// Page `i` always holds `SyntheticPageContent` for (seed, i, version[i]); pages never
/// written are zero. The source sends its version table at switchover and the destination
/// checks its copy with `SyntheticGuest.verify(region:seed:versions:)`, without the
/// source's memory.
public final class SyntheticGuest: @unchecked Sendable {
    public let configuration: SyntheticGuestConfiguration
    public let region: GuestMemoryRegion
    /// The guest's own dirty log (writers mark pages as they write them).
    public let dirtyLog: SyntheticDirtyLog
    private let writers: SyntheticGuestWriters

    /// A guest with fresh (zeroed) memory mapped as the configuration says, region id 0 at
    /// guest-physical address 0.
    public convenience init(configuration: SyntheticGuestConfiguration) throws(SyntheticGuestError) {
        do throws(MigrationConfigurationError) { try configuration.validate() } catch { throw .configuration(error) }
        let layout = GuestMemoryRegionLayout(
            id: 0, guestPhysicalBase: 0, length: configuration.guestSize.bytes, pageSize: configuration.pageSize.bytes)
        let region: GuestMemoryRegion
        do throws(GuestMemoryError) {
            region = try GuestMemoryRegion(
                layout: layout, backing: configuration.memoryBacking, hugePages: configuration.hugePages)
        } catch {
            throw .memory(error)
        }
        try self.init(configuration: configuration, region: region, versions: nil)
    }

    /// A guest over an existing region. With `versions`, the region is taken to hold that
    /// content already (the destination resuming a migrated guest); without, it must be zero.
    public init(
        configuration: SyntheticGuestConfiguration, region: GuestMemoryRegion, versions: [UInt32]?
    ) throws(SyntheticGuestError) {
        do throws(MigrationConfigurationError) { try configuration.validate() } catch { throw .configuration(error) }
        guard region.layout.length == configuration.guestSize.bytes,
              region.layout.pageSize == configuration.pageSize.bytes else {
            throw .regionMismatch("region \(region.layout) does not match guest-size \(configuration.guestSize) "
                + "and page-size \(configuration.pageSize)")
        }
        if let versions, versions.count != region.pageCount {
            throw .regionMismatch("a version table of \(versions.count) pages for a region of \(region.pageCount)")
        }
        self.configuration = configuration
        self.region = region
        dirtyLog = SyntheticDirtyLog(pageCount: region.pageCount, pageSize: region.pageSize)
        writers = SyntheticGuestWriters(configuration: configuration, region: region, log: dirtyLog, initialVersions: versions)
    }

    deinit {
        writers.stop()
    }

    // MARK: running

    /// Starts the writer threads (running, unless paused before).
    public func start() throws(SyntheticGuestError) {
        do throws(SystemCallError) { try writers.start() } catch { throw .thread(error) }
    }

    /// Stops and joins the writers. The memory and version table stay.
    public func stop() {
        writers.stop()
    }

    public var isRunning: Bool { writers.isRunning }

    /// Stops the guest like a VMM stopping its vCPUs: returns only when no writer is in the
    /// middle of a page, and no page changes until `resume()`.
    public func pause() {
        writers.pause()
    }

    public func resume() {
        writers.resume()
    }

    public var isPaused: Bool { writers.paused.load(ordering: .sequentiallyConsistent) }

    /// Auto-converge: writers sleep `percent`/(100-`percent`) of each 10 ms slice they run,
    /// as QEMU's cpu-throttle does to vCPUs. 0 turns it off; values are clamped to 0-99.
    public func setThrottle(percent: Int) {
        writers.throttlePercent.store(min(max(percent, 0), 99), ordering: .relaxed)
        writers.wakeAll()
    }

    public var throttlePercent: Int { writers.throttlePercent.load(ordering: .relaxed) }

    public func setDirtyRate(_ rate: ByteRate) {
        writers.dirtyRate.store(rate.bytesPerSecond, ordering: .relaxed)
        writers.wakeAll()
    }

    public var dirtyRate: ByteRate { ByteRate(bytesPerSecond: writers.dirtyRate.load(ordering: .relaxed)) }

    // MARK: counters and content

    public var pagesWritten: UInt64 { writers.pagesWritten.load(ordering: .relaxed) }
    public var bytesDirtied: UInt64 { pagesWritten &* UInt64(region.pageSize) }

    public func version(ofPage page: Int) -> UInt32 {
        precondition(page >= 0 && page < region.pageCount, "page \(page) outside the guest")
        return writers.versions[page].load(ordering: .acquiring)
    }

    /// Every page's version. Consistent with memory only while the guest is paused.
    public func versionTable() -> [UInt32] {
        (0..<region.pageCount).map { writers.versions[$0].load(ordering: .acquiring) }
    }

    /// Writes `count` pages on the calling thread as writer `writer` would, ignoring rate
    /// and throttle (tests and tools that need an exact number of writes).
    public func writeSynchronously(pages count: Int, asWriter writer: Int = 0) {
        precondition(writer >= 0 && writer < configuration.writers, "writer \(writer) of \(configuration.writers)")
        var chooser = SyntheticPageChooser(
            writer: writer, writers: configuration.writers, workingSetPages: configuration.workingSetPages,
            pattern: configuration.pattern, hotFraction: configuration.hotFraction,
            hotWriteFraction: configuration.hotWriteFraction, seed: configuration.seed ^ 0x5359_4E43)
        for _ in 0..<count {
            guard let page = chooser.next() else { return }
            writers.writePage(page)
        }
        writers.pagesWritten.add(UInt64(count), ordering: .relaxed)
    }

    /// Checks the guest's own memory against its version table (pause first).
    public func verify() -> SyntheticVerification {
        SyntheticGuest.verify(region: region, seed: configuration.seed, versions: versionTable())
    }

    /// What page `page` of this guest holds at `version` (version 0: zeros).
    public func expectedContent(page: Int, version: UInt32) -> [UInt8] {
        SyntheticGuest.expectedContent(page: page, version: version, seed: configuration.seed, pageSize: region.pageSize)
    }

    /// What page `page` holds at `version` (version 0: zeros).
    public static func expectedContent(page: Int, version: UInt32, seed: UInt64, pageSize: Int) -> [UInt8] {
        SyntheticPageContent.bytes(pageSize: pageSize, seed: seed, page: page, version: version)
    }

    /// The destination's check: every page of `region` holds the content of its version.
    public static func verify(region: GuestMemoryRegion, seed: UInt64, versions: [UInt32]) -> SyntheticVerification {
        precondition(versions.count == region.pageCount, "\(versions.count) versions for \(region.pageCount) pages")
        var result = SyntheticVerification(checkedPages: region.pageCount, mismatchedPages: 0, firstMismatches: [])
        for page in 0..<region.pageCount where !SyntheticPageContent.matches(
            UnsafeRawPointer(region.pagePointer(page)), pageSize: region.pageSize, seed: seed, page: page,
            version: versions[page]) {
            result.mismatchedPages += 1
            if result.firstMismatches.count < 16 { result.firstMismatches.append(page) }
        }
        return result
    }

    /// The version table as little-endian bytes, for the switchover message.
    public static func encode(versions: [UInt32]) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(versions.count * 4)
        for version in versions {
            for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: version >> UInt32(shift))) }
        }
        return bytes
    }

    /// Decodes `encode(versions:)`; nil when the length is not a multiple of 4.
    public static func decodeVersions(_ bytes: [UInt8]) -> [UInt32]? {
        guard bytes.count % 4 == 0 else { return nil }
        var versions = [UInt32]()
        versions.reserveCapacity(bytes.count / 4)
        var offset = 0
        while offset < bytes.count {
            var version = UInt32(bytes[offset])
            version |= UInt32(bytes[offset + 1]) << 8
            version |= UInt32(bytes[offset + 2]) << 16
            version |= UInt32(bytes[offset + 3]) << 24
            versions.append(version)
            offset += 4
        }
        return versions
    }
}
