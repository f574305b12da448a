import RdmigChannels
import RdmigMemory
import Testing
@testable import RdmigMigration

/// What the destination does with the sizes and counts a source sends, before and while it
/// maps memory for them.
@Suite struct DestinationLimits {
    func region(_ id: UInt32, base: UInt64 = 0, length: UInt64, pageSize: UInt32 = 4096) -> MigrationMessage.RegionLayout {
        .init(id: id, guestPhysicalBase: base, length: length, pageSize: pageSize)
    }

    func refusal(_ layout: MigrationMessage.Layout, limit: UInt64 = 1 << 40) -> MigrationError? {
        do throws(MigrationError) {
            _ = try MigrationDestination.check(layout, limit: GuestSizeLimit(bytes: limit, reason: "the test's limit"))
            return nil
        } catch {
            return error
        }
    }

    @Test func aLayoutOverTheLimitIsRefusedNamingBothSizes() throws {
        let error = try #require(refusal(.init(regions: [region(0, length: 64 << 20)], devices: []), limit: 32 << 20))
        #expect(error.phase == .layout)
        #expect(error.detail.contains("64.00 MiB (67108864 bytes)") && error.detail.contains("32.00 MiB (33554432 bytes: the test's limit)"),
                "\(error)")
        #expect(error.detail.contains("nothing was mapped"))
        // At the limit exactly it is accepted.
        #expect(refusal(.init(regions: [region(0, length: 32 << 20)], devices: []), limit: 32 << 20) == nil)
    }

    @Test func aLayoutBuiltWithLengthsThatOverflowIsRefusedNotSummed() throws {
        // The decoder refuses this; the destination does not rely on it.
        let half = UInt64(1) << 63
        let error = try #require(refusal(.init(regions: [region(0, length: half), region(1, base: 0, length: half)], devices: [])))
        #expect(error.detail.contains("add up to more than 2^64 - 1 bytes"), "\(error)")
    }

    @Test func emptyOverlappingDuplicateAndUnmappableLayoutsAreRefusedBeforeMapping() throws {
        #expect(refusal(.init(regions: [], devices: []))?.detail == "LAYOUT has no memory region")
        let overlapping = refusal(.init(regions: [region(0, length: 1 << 20), region(1, base: 1 << 19, length: 1 << 20)], devices: []))
        #expect(overlapping?.detail.contains("regions 0 and 1 overlap") == true, "\(String(describing: overlapping))")
        let twice = refusal(.init(regions: [region(4, length: 4096), region(4, base: 1 << 20, length: 4096)], devices: []))
        #expect(twice?.detail.contains("region 4 twice") == true, "\(String(describing: twice))")
        let unmappable = refusal(.init(regions: [region(2, length: 8192, pageSize: 2048)], devices: []))
        #expect(unmappable?.detail.contains("page size 2048") == true, "\(String(describing: unmappable))")
    }

    @Test func reportTotalsRefuseASumThatOverflowsNamingTheField() throws {
        var total: UInt64 = 5
        try MigrationDestination.add(7, to: &total, "ITERATION_DONE", "bytesWritten")
        #expect(total == 12)
        total = .max
        #expect(throws: Never.self) { try MigrationDestination.add(0, to: &total, "ITERATION_DONE", "bytesWritten") }
        do throws(MigrationError) {
            try MigrationDestination.add(1, to: &total, "ITERATION_DONE", "bytesWritten")
            Issue.record("u64 max + 1 was accepted")
        } catch {
            #expect(error.detail == "ITERATION_DONE 'bytesWritten' 1 overflows the total of 18446744073709551615 received so far")
        }
        #expect(total == .max, "a refused sum leaves the total as it was")
    }

    @Test func theDefaultLimitIsWhatTheHostCanPin() {
        let gib: UInt64 = 1 << 30
        // CAP_IPC_LOCK: memory is the limit, less the reserve (1/16 of MemTotal here).
        let roomy = GuestSizeLimit.pinnable(memoryAvailable: 12 * gib, memoryTotal: 32 * gib,
                                            memlock: MemlockLimit(soft: 8 << 20, hard: 8 << 20, locked: 0, capIPCLock: true))
        #expect(roomy.bytes == 10 * gib, "\(roomy)")
        #expect(roomy.reason.contains("MemAvailable 12.00 GiB less a 2.00 GiB reserve"), "\(roomy)")
        // Without it the memlock limit, less what is locked already, is the smaller one.
        let limited = GuestSizeLimit.pinnable(memoryAvailable: 12 * gib, memoryTotal: 32 * gib,
                                              memlock: MemlockLimit(soft: 64 << 20, hard: 64 << 20, locked: 16 << 20, capIPCLock: false))
        #expect(limited.bytes == 48 << 20, "\(limited)")
        #expect(limited.reason.contains("RLIMIT_MEMLOCK 64.00 MiB less 16.00 MiB locked already"), "\(limited)")
        // Less memory than the reserve: nothing, not a wrapped huge number.
        let starved = GuestSizeLimit.pinnable(memoryAvailable: 100 << 20, memoryTotal: 1 * gib, memlock: MemlockLimit(soft: nil, hard: nil, locked: 0, capIPCLock: false))
        #expect(starved.bytes == 0, "\(starved)")
        let locked = GuestSizeLimit.pinnable(memoryAvailable: nil, memoryTotal: nil, memlock: MemlockLimit(soft: 8 << 20, hard: nil, locked: 9 << 20, capIPCLock: false))
        #expect(locked.bytes == 0, "\(locked)")
        // On this host: no more than MemTotal.
        let here = GuestSizeLimit.current()
        #expect(here.bytes > 0 && here.bytes < GuestSizeLimit.kilobytesFromMeminfo("MemTotal")!, "\(here)")
    }

    @Test func meminfoFieldsAreReadInBytes() {
        let text = "MemTotal:       32768000 kB\nMemFree:  1 kB\nMemAvailable:   16384000 kB\n"
        #expect(GuestSizeLimit.kilobytes("MemTotal", in: text) == 32_768_000 * 1024)
        #expect(GuestSizeLimit.kilobytes("MemAvailable", in: text) == 16_384_000 * 1024)
        #expect(GuestSizeLimit.kilobytes("Mem", in: text) == nil)
        #expect(GuestSizeLimit.kilobytes("MemTotal", in: "MemTotal: 18446744073709551615 kB\n") == nil, "overflowing kB is no size")
    }
}

extension GuestSizeLimit {
    static func kilobytesFromMeminfo(_ field: String) -> UInt64? {
        kilobytes(field, in: (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? "")
    }
}
