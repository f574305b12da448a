import RdmigSystem

/// The synthetic guest's shape and workload.
public struct SyntheticGuestConfiguration: Sendable, Equatable {
    /// Total guest memory (one region).
    public var guestSize: ByteCount = .gibibytes(1)
    /// Tracking and transfer unit.
    public var pageSize: ByteCount = .kibibytes(4)
    /// Bytes per second the writers dirty, all writers together; 0 is an idle guest.
    public var dirtyRate: ByteRate = ByteRate(bytesPerSecond: 0)
    /// The part of memory the writers touch, from guest address 0; nil means all of it.
    /// Pages outside it stay zero and travel as zero-page markers.
    public var workingSet: ByteCount?
    public var pattern: WritePattern = .uniform
    /// hot-cold: the hot part's share of the working set and of the writes.
    public var hotFraction: Double = 0.2
    public var hotWriteFraction: Double = 0.8
    /// Writer threads; each owns every n-th page, so no two write the same page.
    public var writers: Int = 1
    /// Seeds page content and the writers' page choices: the same seed gives the same
    /// content for the same (page, version) on both hosts.
    public var seed: UInt64 = 0x7264_6D69_6700_0001
    public var memoryBacking: GuestMemoryBacking = .anonymous
    public var hugePages: Bool = false

    public init() {}

    public var workingSetBytes: UInt64 { workingSet?.bytes ?? guestSize.bytes }
    public var pageCount: Int { Int(guestSize.bytes / max(pageSize.bytes, 1)) }
    public var workingSetPages: Int { Int(workingSetBytes / max(pageSize.bytes, 1)) }

    /// Checks the rules the guest relies on; each message names the setting and the fix.
    public func validate() throws(MigrationConfigurationError) {
        let page = pageSize.bytes
        guard page.nonzeroBitCount == 1, page >= UInt64(GuestMemoryRegion.hostPageSize) else {
            throw .outOfRange(key: "page-size", value: pageSize.description,
                              rule: "a power of two of at least the host page size \(GuestMemoryRegion.hostPageSize)")
        }
        guard guestSize.bytes > 0, guestSize.bytes % page == 0 else {
            throw .outOfRange(key: "guest-size", value: guestSize.description,
                              rule: "a positive multiple of page-size \(pageSize)")
        }
        if let workingSet {
            guard workingSet.bytes % page == 0, workingSet.bytes > 0 || dirtyRate.bytesPerSecond == 0 else {
                throw .outOfRange(key: "working-set", value: workingSet.description,
                                  rule: "a multiple of page-size \(pageSize), and not 0 when dirty-rate is set")
            }
            guard workingSet <= guestSize else {
                throw .inconsistent("working-set \(workingSet) is larger than guest-size \(guestSize): "
                    + "lower working-set or raise guest-size")
            }
        }
        guard (1...64).contains(writers) else {
            throw .outOfRange(key: "writers", value: "\(writers)", rule: "1 to 64 writer threads")
        }
        guard writers <= max(workingSetPages, 1) else {
            throw .inconsistent("\(writers) writers for a working set of \(workingSetPages) pages: "
                + "every writer needs at least one page of its own; use fewer writers or a larger working-set")
        }
        guard hotFraction > 0, hotFraction < 1 else {
            throw .outOfRange(key: "hot-fraction", value: "\(hotFraction)", rule: "strictly between 0 and 1")
        }
        guard hotWriteFraction >= 0, hotWriteFraction <= 1 else {
            throw .outOfRange(key: "hot-write-fraction", value: "\(hotWriteFraction)", rule: "between 0 and 1")
        }
    }
}
