#if canImport(Glibc)
import Glibc
#endif
import CHwloc
import RdmigSystem

/// What `rdmig probe` and the buffer pool need to know about the machine: NUMA nodes with
/// their CPUs and memory, where each network interface and RDMA device sits, the memlock
/// limit and the huge pages there are. A snapshot; `discover()` takes a new one.
public struct MachineTopology: Codable, Sendable, Equatable {
    public var nodes: [NUMANode]
    /// CPUs the calling thread may run on (sched_getaffinity), e.g. narrowed by a cgroup cpuset.
    public var allowedCPUs: [Int32]
    public var interfaces: [DeviceLocality]
    public var rdmaDevices: [DeviceLocality]
    public var memlock: MemlockLimit
    /// System-wide huge pages per size.
    public var hugePages: [HugePageCount]
    /// "hwloc 2.9.0" or "sysfs" — where nodes and localities came from. Node memory is
    /// always sysfs's node<N>/meminfo when it exists (the kernel's current figure).
    public var source: String
    /// Things the operator should know (hwloc missing, one node, ...).
    public var notes: [String]

    public init(
        nodes: [NUMANode], allowedCPUs: [Int32], interfaces: [DeviceLocality], rdmaDevices: [DeviceLocality],
        memlock: MemlockLimit, hugePages: [HugePageCount], source: String, notes: [String]
    ) {
        self.nodes = nodes
        self.allowedCPUs = allowedCPUs
        self.interfaces = interfaces
        self.rdmaDevices = rdmaDevices
        self.memlock = memlock
        self.hugePages = hugePages
        self.source = source
        self.notes = notes
    }

    public var nodeIDs: [Int] { nodes.map(\.id) }

    public var isSingleNode: Bool { nodes.count == 1 }

    public func node(_ id: Int) -> NUMANode? { nodes.first { $0.id == id } }

    /// "1 NUMA node (0): every CPU, memory and device is local to it" or "2 NUMA nodes (0, 1)".
    public var summary: String {
        switch nodes.count {
        case 0: return "no NUMA information (neither hwloc nor sysfs described the machine)"
        case 1: return "1 NUMA node (\(nodes[0].id)): every CPU, memory and device is local to it"
        default: return "\(nodes.count) NUMA nodes (\(nodes.map { String($0.id) }.joined(separator: ", ")))"
        }
    }

    /// Looks a name up among interfaces first, then RDMA devices.
    public func locality(of name: String) -> DeviceLocality? {
        interfaces.first { $0.name == name } ?? rdmaDevices.first { $0.name == name }
    }

    /// Like `locality(of:)`, but an unknown name is an error that lists the known ones.
    public func requireLocality(of name: String) throws(MemoryError) -> DeviceLocality {
        guard let locality = locality(of: name) else {
            throw .noSuchDevice(name, known: interfaces.map(\.name) + rdmaDevices.map(\.name))
        }
        return locality
    }

    /// The node buffers and threads should use.
    ///
    /// auto: the device's node when it reports one; the only node on a one-node machine;
    /// otherwise the node of the CPU the caller runs on (the kernel's local policy would pick
    /// the same). A fixed node must exist, or the error names the nodes that do.
    public func chooseNode(_ selection: NodeSelection, device: String? = nil) throws(MemoryError) -> NodeChoice {
        let locality = try device.map { (name: String) throws(MemoryError) in try requireLocality(of: name) }
        switch selection {
        case .node(let id):
            guard node(id) != nil else { throw .noSuchNode(requested: id, existing: nodeIDs) }
            var reason = "configured"
            if let locality, let deviceNode = locality.node, deviceNode != id {
                reason += "; note that \(locality.name) is on node \(deviceNode)"
            }
            return NodeChoice(node: id, reason: reason)
        case .auto:
            if let locality, let deviceNode = locality.node, node(deviceNode) != nil {
                return NodeChoice(node: deviceNode, reason: "local to \(locality.name)")
            }
            if isSingleNode {
                return NodeChoice(node: nodes[0].id, reason: "the only node")
            }
            guard !nodes.isEmpty else { throw .noSuchNode(requested: 0, existing: []) }
            let why = locality.map { "\($0.name) reports \($0.nodeDescription); " } ?? ""
            if let cpu = Self.currentCPU(), let here = nodes.first(where: { $0.cpus.contains(cpu) }) {
                return NodeChoice(node: here.id, reason: why + "node of CPU \(cpu), where rdmig runs")
            }
            return NodeChoice(node: nodes[0].id, reason: why + "first node")
        }
    }

    /// Discovers the machine. hwloc is asked first (PCI locality through its I/O tree);
    /// sysfs fills in what hwloc does not know and stands in when hwloc fails. Pass
    /// `hwloc: nil` to use sysfs alone, or another source and a sysfs copy to describe a
    /// machine in tests.
    public static func discover(
        hwloc source: HwlocTopology.Source? = .system, sysfs: SysfsTree = SysfsTree()
    ) -> MachineTopology {
        var notes: [String] = []
        let fallback = SysfsLocality(sysfs: sysfs)
        var hwlocNodes: [(id: Int, cpus: [Int32], memory: UInt64)] = []
        var hwlocDevices: [HwlocTopology.OSDevice] = []
        var sourceText = "sysfs"
        if let source {
            do {
                let topology = try HwlocTopology(source)
                hwlocNodes = topology.numaNodes()
                hwlocDevices = topology.osDevices()
                switch source {
                case .system:
                    let api = hwloc_get_api_version()
                    sourceText = "hwloc " + (topology.version ?? "API \(api >> 16).\((api >> 8) & 0xff)")
                case .xml: sourceText = "hwloc (XML)"
                case .synthetic: sourceText = "hwloc (synthetic)"
                }
            } catch {
                notes.append(error.description)
            }
        }

        var nodes: [NUMANode]
        if !hwlocNodes.isEmpty {
            nodes = hwlocNodes.map { entry in
                let memory = fallback.memory(ofNode: entry.id)
                return NUMANode(
                    id: entry.id, cpus: entry.cpus, memoryTotal: memory?.total ?? entry.memory, memoryFree: memory?.free,
                    hugePages: HugePageCount.onNode(entry.id, sysfs: sysfs))
            }
        } else {
            if source != nil { sourceText = "sysfs" }
            nodes = fallback.nodeIDs().map { id in
                let memory = fallback.memory(ofNode: id)
                return NUMANode(
                    id: id, cpus: fallback.cpus(ofNode: id), memoryTotal: memory?.total ?? 0,
                    memoryFree: memory?.free, hugePages: HugePageCount.onNode(id, sysfs: sysfs))
            }
        }
        if nodes.isEmpty {
            // A kernel built without CONFIG_NUMA has no node directory: everything is one node.
            let cpus = (try? SystemThread.currentAffinity()) ?? []
            nodes = [NUMANode(id: 0, cpus: cpus, memoryTotal: 0, memoryFree: nil, hugePages: [])]
            notes.append("the kernel lists no NUMA node: treating the machine as node 0")
        }

        func merge(_ kind: DeviceLocality.Kind, sysfsNames: [String], lookup: (String) -> DeviceLocality?) -> [DeviceLocality] {
            let fromHwloc = hwlocDevices.filter { $0.kind == kind }
            let names = Set(sysfsNames).union(fromHwloc.map(\.name)).sorted()
            return names.compactMap { name in
                let viaSysfs = lookup(name)
                if let device = fromHwloc.first(where: { $0.name == name }) {
                    return DeviceLocality(
                        name: name, kind: kind, node: device.nodes.count == 1 ? device.nodes[0] : nil,
                        nodes: device.nodes, cpus: device.cpus, pciAddress: device.pciAddress ?? viaSysfs?.pciAddress,
                        source: .hwloc)
                }
                return viaSysfs
            }
        }
        var interfaces = merge(.networkInterface, sysfsNames: fallback.interfaceNames(), lookup: fallback.interface)
        var rdmaDevices = merge(.rdmaDevice, sysfsNames: fallback.rdmaDeviceNames(), lookup: fallback.rdmaDevice)

        if nodes.count == 1 {
            // With one node every physical device is local to it, whatever numa_node says
            // (virtual machines and one-socket hosts report -1); hwloc answers the same.
            let only = nodes[0]
            for index in interfaces.indices { Self.placeOnOnlyNode(&interfaces[index], only) }
            for index in rdmaDevices.indices { Self.placeOnOnlyNode(&rdmaDevices[index], only) }
            notes.append("one NUMA node: buffers and threads are local to every device")
        }
        if rdmaDevices.isEmpty {
            notes.append("no RDMA device in sysfs (/sys/class/infiniband)")
        }

        return MachineTopology(
            nodes: nodes, allowedCPUs: (try? SystemThread.currentAffinity()) ?? [],
            interfaces: interfaces, rdmaDevices: rdmaDevices, memlock: MemlockLimit.current(),
            hugePages: HugePageCount.systemWide(sysfs: sysfs), source: sourceText, notes: notes)
    }

    /// The CPU the calling thread last ran on: field 39 ("processor") of /proc/thread-self/stat
    /// (proc(5)); Glibc's sched_getcpu is not visible to Swift without _GNU_SOURCE.
    static func currentCPU() -> Int32? {
        guard let stat = SysfsTree.readFile("/proc/thread-self/stat"),
              let close = stat.lastIndex(of: ")")
        else { return nil }
        // After "pid (comm)" the fields start at number 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 36 else { return nil }
        return Int32(fields[36])
    }

    private static func placeOnOnlyNode(_ locality: inout DeviceLocality, _ only: NUMANode) {
        guard locality.source != .virtual, locality.node == nil else { return }
        locality.node = only.id
        locality.nodes = [only.id]
        if locality.cpus.isEmpty { locality.cpus = only.cpus }
        locality.note = "the machine has one NUMA node"
    }

    enum CodingKeys: String, CodingKey {
        case nodes, interfaces, memlock, source, notes, summary
        case allowedCPUs = "allowed-cpus"
        case rdmaDevices = "rdma-devices"
        case hugePages = "huge-pages"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        nodes = try container.decode([NUMANode].self, forKey: .nodes)
        allowedCPUs = try container.decode([Int32].self, forKey: .allowedCPUs)
        interfaces = try container.decode([DeviceLocality].self, forKey: .interfaces)
        rdmaDevices = try container.decode([DeviceLocality].self, forKey: .rdmaDevices)
        memlock = try container.decode(MemlockLimit.self, forKey: .memlock)
        hugePages = try container.decode([HugePageCount].self, forKey: .hugePages)
        source = try container.decode(String.self, forKey: .source)
        notes = try container.decode([String].self, forKey: .notes)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(summary, forKey: .summary)
        try container.encode(nodes, forKey: .nodes)
        try container.encode(allowedCPUs, forKey: .allowedCPUs)
        try container.encode(interfaces, forKey: .interfaces)
        try container.encode(rdmaDevices, forKey: .rdmaDevices)
        try container.encode(memlock, forKey: .memlock)
        try container.encode(hugePages, forKey: .hugePages)
        try container.encode(source, forKey: .source)
        try container.encode(notes, forKey: .notes)
    }
}
