/// Where a network interface or RDMA device sits: the NUMA node and the CPUs close to it.
public struct DeviceLocality: Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Codable, Sendable {
        case networkInterface = "network-interface"
        case rdmaDevice = "rdma-device"
    }

    /// How the locality was found.
    public enum Source: String, Codable, Sendable {
        /// hwloc's I/O tree: the device's first non-I/O ancestor (PCI locality).
        case hwloc
        /// sysfs `device/numa_node` and `local_cpulist` of the device or its PCI parent.
        case sysfs
        /// No `device` in sysfs: a software interface (lo, bridge, veth, ifb, ...).
        case virtual
    }

    public var name: String
    public var kind: Kind
    /// The one node the device is local to; nil when it is virtual, reports no affinity
    /// (sysfs numa_node -1) or hangs below several nodes.
    public var node: Int?
    /// The nodes of the device's locality (one for a NIC on a node's PCI root).
    public var nodes: [Int]
    /// CPUs local to the device (empty when unknown).
    public var cpus: [Int32]
    /// PCI bus id such as 0000:81:00.0, when the device is on PCI.
    public var pciAddress: String?
    public var source: Source
    /// For a software RDMA device (rdma_rxe): the interface it runs over, whose locality it has.
    public var via: String?
    /// Something the operator should know, e.g. that the machine has one node.
    public var note: String?

    public init(
        name: String, kind: Kind, node: Int?, nodes: [Int], cpus: [Int32], pciAddress: String?,
        source: Source, via: String? = nil, note: String? = nil
    ) {
        self.name = name
        self.kind = kind
        self.node = node
        self.nodes = nodes
        self.cpus = cpus
        self.pciAddress = pciAddress
        self.source = source
        self.via = via
        self.note = note
    }

    /// For `rdmig probe`: "node 1", "none (virtual)", "none (no NUMA affinity reported)".
    public var nodeDescription: String {
        if let node { return "node \(node)" }
        switch source {
        case .virtual: return "none (virtual)"
        case .hwloc, .sysfs:
            if nodes.count > 1 { return "nodes \(CPUList.format(nodes)) (attached above several nodes)" }
            return "none (no NUMA affinity reported)"
        }
    }

    public var description: String {
        var text = "\(name): \(nodeDescription)"
        if !cpus.isEmpty { text += ", local CPUs \(CPUList.format(cpus))" }
        if let pciAddress { text += ", PCI \(pciAddress)" }
        if let via { text += ", via \(via)" }
        text += " [\(source.rawValue)]"
        if let note { text += "; \(note)" }
        return text
    }

    enum CodingKeys: String, CodingKey {
        case name, kind, node, nodes, cpus, source, via, note
        case pciAddress = "pci-address"
        case nodeDescription = "node-description"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        kind = try container.decode(Kind.self, forKey: .kind)
        node = try container.decodeIfPresent(Int.self, forKey: .node)
        nodes = try container.decode([Int].self, forKey: .nodes)
        cpus = try container.decode([Int32].self, forKey: .cpus)
        pciAddress = try container.decodeIfPresent(String.self, forKey: .pciAddress)
        source = try container.decode(Source.self, forKey: .source)
        via = try container.decodeIfPresent(String.self, forKey: .via)
        note = try container.decodeIfPresent(String.self, forKey: .note)
    }

    // The JSON carries the human text too, so `rdmig probe --json` readers need not rebuild it;
    // `node` is written as null when there is none, so the key is always present.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(kind, forKey: .kind)
        try container.encode(node, forKey: .node)
        try container.encode(nodes, forKey: .nodes)
        try container.encode(cpus, forKey: .cpus)
        try container.encodeIfPresent(pciAddress, forKey: .pciAddress)
        try container.encode(source, forKey: .source)
        try container.encodeIfPresent(via, forKey: .via)
        try container.encodeIfPresent(note, forKey: .note)
        try container.encode(nodeDescription, forKey: .nodeDescription)
    }
}
