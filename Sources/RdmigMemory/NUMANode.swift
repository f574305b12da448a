/// One NUMA node: its CPUs, its memory and its huge pages.
public struct NUMANode: Codable, Sendable, Equatable {
    /// The kernel's node number (hwloc's os_index, /sys/devices/system/node/node<N>).
    public var id: Int
    /// CPUs of this node (all of them; `MachineTopology.allowedCPUs` says which this process may use).
    public var cpus: [Int32]
    /// Bytes of memory on the node.
    public var memoryTotal: UInt64
    /// Bytes free now (libnuma numa_node_size64); nil when it could not be read.
    public var memoryFree: UInt64?
    /// Huge pages of each size on this node.
    public var hugePages: [HugePageCount]

    public init(id: Int, cpus: [Int32], memoryTotal: UInt64, memoryFree: UInt64?, hugePages: [HugePageCount]) {
        self.id = id
        self.cpus = cpus
        self.memoryTotal = memoryTotal
        self.memoryFree = memoryFree
        self.hugePages = hugePages
    }

    enum CodingKeys: String, CodingKey {
        case id, cpus
        case memoryTotal = "memory-total"
        case memoryFree = "memory-free"
        case hugePages = "huge-pages"
    }
}
