/// All of a guest's memory: its regions by id, in guest-physical order.
public final class GuestMemory: Sendable {
    public let regions: [GuestMemoryRegion]

    /// Takes regions that are already mapped; ids must be unique and guest-physical ranges
    /// must not overlap.
    public init(regions: [GuestMemoryRegion]) throws(GuestMemoryError) {
        let sorted = regions.sorted { $0.guestPhysicalBase < $1.guestPhysicalBase }
        var seen = Set<UInt32>()
        for region in sorted {
            guard seen.insert(region.id).inserted else { throw .duplicateRegion(region.id) }
        }
        for (left, right) in zip(sorted, sorted.dropFirst())
        where left.layout.guestPhysicalRange.overlaps(right.layout.guestPhysicalRange) {
            throw .overlappingRegions(left.id, right.id)
        }
        self.regions = sorted
    }

    /// The destination's side of LAYOUT: maps a region for each layout (with the same
    /// backing kind for all; a memfd or file backing gets the region id appended to its name)
    /// and, with `pin`, locks each in RAM before any window is exported (faulting it in on
    /// `pinThreads` threads, on `pinCPUs` if given).
    public static func map(
        layouts: [GuestMemoryRegionLayout], backing: GuestMemoryBacking = .anonymous,
        hugePages: Bool = false, pin: Bool, pinThreads: Int = 1, pinCPUs: [Int32] = [], node: Int? = nil,
        pinOnFault: Bool = false
    ) throws(GuestMemoryError) -> GuestMemory {
        var regions: [GuestMemoryRegion] = []
        for layout in layouts {
            let regionBacking: GuestMemoryBacking
            switch backing {
            case .anonymous: regionBacking = .anonymous
            case .memfd(let name): regionBacking = .memfd(name: layouts.count > 1 ? "\(name)-\(layout.id)" : name)
            case .file(let path, let offset, let create):
                regionBacking = .file(path: layouts.count > 1 ? "\(path).\(layout.id)" : path, offset: offset, create: create)
            }
            let region = try GuestMemoryRegion(layout: layout, backing: regionBacking, hugePages: hugePages)
            if pin { try region.pin(threads: pinThreads, cpus: pinCPUs, node: node, onFault: pinOnFault) }
            regions.append(region)
        }
        return try GuestMemory(regions: regions)
    }

    public var layouts: [GuestMemoryRegionLayout] { regions.map(\.layout) }
    public var totalBytes: UInt64 { regions.reduce(0) { $0 + $1.layout.length } }
    public var totalPages: Int { regions.reduce(0) { $0 + $1.pageCount } }

    public func region(id: UInt32) throws(GuestMemoryError) -> GuestMemoryRegion {
        guard let region = regions.first(where: { $0.id == id }) else { throw .unknownRegion(id) }
        return region
    }

    /// The region and page holding guest-physical `address`.
    public func locate(guestPhysical address: UInt64) -> (region: GuestMemoryRegion, page: Int)? {
        for region in regions {
            if let page = region.pageIndex(ofGuestPhysical: address) { return (region, page) }
        }
        return nil
    }

    /// Every region's digest, in region order.
    public func digests(threads: Int = 1) throws(GuestMemoryError) -> [RegionDigest] {
        var result: [RegionDigest] = []
        for region in regions {
            do {
                result.append(try region.digest(threads: threads))
            } catch {
                throw .digestFailed(region: region.id, error)
            }
        }
        return result
    }
}
