/// Device locality from sysfs alone, for when hwloc is unavailable or does not list a device.
///
/// `/sys/class/net/<if>/device` and `/sys/class/infiniband/<dev>/device` link to the device in
/// /sys/devices; `numa_node` (-1: no affinity) and `local_cpulist` live on the PCI device,
/// which for virtio-net is the parent of the linked `virtioN` device — so the walk goes up
/// the resolved path until a directory has `numa_node`. A software interface has no `device`.
public struct SysfsLocality: Sendable {
    public let sysfs: SysfsTree

    public init(sysfs: SysfsTree = SysfsTree()) {
        self.sysfs = sysfs
    }

    public func interfaceNames() -> [String] { sysfs.list("class/net") }

    public func rdmaDeviceNames() -> [String] { sysfs.list("class/infiniband") }

    /// Locality of a network interface; nil when sysfs has no such interface.
    public func interface(_ name: String) -> DeviceLocality? {
        let base = "class/net/\(name)"
        guard sysfs.exists(base) else { return nil }
        return locality(name: name, kind: .networkInterface, base: base)
    }

    /// Locality of an RDMA device; nil when sysfs has no such device. A software device
    /// without a `device` link (rdma_rxe) takes the locality of the interface its `parent`
    /// attribute names (drivers/infiniband/sw/rxe/rxe_verbs.c, parent_show).
    public func rdmaDevice(_ name: String) -> DeviceLocality? {
        let base = "class/infiniband/\(name)"
        guard sysfs.exists(base) else { return nil }
        if !sysfs.exists("\(base)/device"), let parent = sysfs.contents("\(base)/parent"),
           let lower = interface(parent)
        {
            var result = lower
            result.name = name
            result.kind = .rdmaDevice
            result.via = parent
            return result
        }
        return locality(name: name, kind: .rdmaDevice, base: base)
    }

    /// The NUMA nodes sysfs lists (node/online, else the node<N> directories).
    public func nodeIDs() -> [Int] {
        if let online = sysfs.contents("devices/system/node/online"), let nodes = try? CPUList.parse(online) {
            return nodes.map(Int.init)
        }
        return sysfs.list("devices/system/node").compactMap { name in
            name.hasPrefix("node") ? Int(name.dropFirst(4)) : nil
        }.sorted()
    }

    public func cpus(ofNode node: Int) -> [Int32] {
        sysfs.contents("devices/system/node/node\(node)/cpulist").flatMap { try? CPUList.parse($0) } ?? []
    }

    /// MemTotal and MemFree of a node in bytes, from node<N>/meminfo ("Node 0 MemFree: 123 kB"),
    /// the file libnuma's numa_node_size64 reads too.
    public func memory(ofNode node: Int) -> (total: UInt64, free: UInt64)? {
        guard let text = sysfs.contents("devices/system/node/node\(node)/meminfo") else { return nil }
        func field(_ name: String) -> UInt64? {
            for line in text.split(separator: "\n") {
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                if words.count >= 4, words[2] == "\(name):" { return UInt64(words[3]).map { $0 * 1024 } }
            }
            return nil
        }
        guard let total = field("MemTotal") else { return nil }
        return (total, field("MemFree") ?? 0)
    }

    private func locality(name: String, kind: DeviceLocality.Kind, base: String) -> DeviceLocality {
        guard sysfs.exists("\(base)/device"), var directory = sysfs.resolve("\(base)/device") else {
            return DeviceLocality(
                name: name, kind: kind, node: nil, nodes: [], cpus: [], pciAddress: nil, source: .virtual)
        }
        var pciAddress: String?
        var node: Int?
        var cpus: [Int32] = []
        while directory.count > 1 {
            let component = String(directory.split(separator: "/").last ?? "")
            if pciAddress == nil, Self.isPCIAddress(component) { pciAddress = component }
            if let value = sysfs.integer("\(directory)/numa_node") {
                node = value >= 0 ? value : nil
                cpus = sysfs.contents("\(directory)/local_cpulist").flatMap { try? CPUList.parse($0) } ?? []
                break
            }
            guard let slash = directory.lastIndex(of: "/") else { break }
            directory = String(directory[..<slash])
        }
        return DeviceLocality(
            name: name, kind: kind, node: node, nodes: node.map { [$0] } ?? [], cpus: cpus,
            pciAddress: pciAddress, source: .sysfs)
    }

    /// "0000:81:00.0": domain:bus:device.function in hex.
    static func isPCIAddress(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 12, bytes[4] == UInt8(ascii: ":"), bytes[7] == UInt8(ascii: ":"),
              bytes[10] == UInt8(ascii: ".")
        else { return false }
        return [0, 1, 2, 3, 5, 6, 8, 9, 11].allSatisfy { index in
            let byte = bytes[index]
            return (byte >= 48 && byte <= 57) || (byte >= 97 && byte <= 102)
        }
    }
}
