/// How many huge pages of one size the kernel has (system-wide or on one node).
///
/// From /sys/kernel/mm/hugepages/hugepages-<size>kB/{nr,free,resv}_hugepages and
/// /sys/devices/system/node/node<N>/hugepages/... (Documentation/admin-guide/mm/hugetlbpage.rst).
/// `reserved` pages are free but promised to existing mappings, so a new mapping can count
/// only on `free - reserved` (per node, sysfs has no reserved count; the system-wide one bounds it).
public struct HugePageCount: Codable, Sendable, Equatable {
    public var pageSize: PageSize
    public var total: Int
    public var free: Int
    public var reserved: Int

    public init(pageSize: PageSize, total: Int, free: Int, reserved: Int = 0) {
        self.pageSize = pageSize
        self.total = total
        self.free = free
        self.reserved = reserved
    }

    /// Pages a new mapping can get.
    public var available: Int { max(0, free - reserved) }

    enum CodingKeys: String, CodingKey {
        case pageSize = "page-size"
        case total, free, reserved
    }

    /// System-wide counts for the sizes this kernel supports (missing directories are left
    /// out: a kernel without 1 GiB page support has no hugepages-1048576kB).
    public static func systemWide(sysfs: SysfsTree = SysfsTree()) -> [HugePageCount] {
        PageSize.allCases.filter(\.isHuge).compactMap { size in
            let directory = "kernel/mm/hugepages/\(size.sysfsDirectory)"
            guard let total = sysfs.integer("\(directory)/nr_hugepages") else { return nil }
            return HugePageCount(
                pageSize: size, total: total,
                free: sysfs.integer("\(directory)/free_hugepages") ?? 0,
                reserved: sysfs.integer("\(directory)/resv_hugepages") ?? 0)
        }
    }

    /// Counts on one node (no per-node reserved count exists in sysfs).
    public static func onNode(_ node: Int, sysfs: SysfsTree = SysfsTree()) -> [HugePageCount] {
        PageSize.allCases.filter(\.isHuge).compactMap { size in
            let directory = "devices/system/node/node\(node)/hugepages/\(size.sysfsDirectory)"
            guard let total = sysfs.integer("\(directory)/nr_hugepages") else { return nil }
            return HugePageCount(
                pageSize: size, total: total, free: sysfs.integer("\(directory)/free_hugepages") ?? 0)
        }
    }
}
