/// Where a region sits in the guest and how it is cut into pages: what the source sends in
/// LAYOUT and the destination maps. Page size is the migration's tracking and transfer unit
/// (4 KiB, or 2 MiB for huge-page-backed guests), a power of two no smaller than the host's.
public struct GuestMemoryRegionLayout: Hashable, Codable, Sendable, CustomStringConvertible {
    public var id: UInt32
    public var guestPhysicalBase: UInt64
    public var length: UInt64
    public var pageSize: UInt64

    public init(id: UInt32, guestPhysicalBase: UInt64 = 0, length: UInt64, pageSize: UInt64 = 4096) {
        self.id = id
        self.guestPhysicalBase = guestPhysicalBase
        self.length = length
        self.pageSize = pageSize
    }

    public var pageCount: Int { pageSize == 0 ? 0 : Int(length / pageSize) }

    /// The guest-physical addresses the region covers.
    public var guestPhysicalRange: Range<UInt64> { guestPhysicalBase..<(guestPhysicalBase &+ length) }

    enum CodingKeys: String, CodingKey {
        case id
        case guestPhysicalBase = "guest-physical-base"
        case length
        case pageSize = "page-size"
    }

    /// Checks what both sides rely on; the message names the region and the rule.
    public func validate(hostPageSize: Int = GuestMemoryRegion.hostPageSize) throws(GuestMemoryError) {
        func invalid(_ why: String) -> GuestMemoryError { .invalidLayout(region: id, why) }
        guard pageSize.nonzeroBitCount == 1 else {
            throw invalid("page size \(pageSize) is not a power of two")
        }
        guard pageSize >= UInt64(hostPageSize) else {
            throw invalid("page size \(pageSize) is smaller than the host page size \(hostPageSize)")
        }
        guard length > 0 else { throw invalid("length is 0") }
        guard length % pageSize == 0 else {
            throw invalid("length \(length) is not a multiple of the page size \(pageSize)")
        }
        guard guestPhysicalBase % pageSize == 0 else {
            throw invalid("guest-physical base 0x\(String(guestPhysicalBase, radix: 16)) is not page aligned")
        }
        let (_, overflow) = guestPhysicalBase.addingReportingOverflow(length)
        guard !overflow else { throw invalid("base + length overflows 64 bits") }
    }

    public var description: String {
        "region \(id): guest 0x\(String(guestPhysicalBase, radix: 16)) + \(ByteCountText.text(length)) in \(ByteCountText.text(pageSize)) pages"
    }
}
