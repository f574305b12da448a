#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// An RDMA device as libibverbs sees it, for `rdmig probe` and backend selection.
///
/// Read once with `RDMADevice.list()`; nothing here stays open.
public struct RDMADevice: Sendable, Equatable, CustomStringConvertible {
    /// The kernel's name for the device (`mlx5_0`, `rxe0`).
    public var name: String
    /// The node GUID, in host byte order.
    public var nodeGUID: UInt64
    /// `ibv_node_type_str`: "InfiniBand channel adapter", "iWARP NIC", ...
    public var nodeType: String
    public var firmwareVersion: String
    /// Largest single registration the device accepts (`max_mr_size`).
    public var maxMemoryRegionSize: UInt64
    /// Deepest send or receive queue a QP may have (`max_qp_wr`).
    public var maxQueuePairWorkRequests: Int
    /// Largest completion queue (`max_cqe`).
    public var maxCompletionQueueEntries: Int
    /// NUMA node of the device's PCI function, from sysfs; nil when the kernel does not say
    /// (virtual devices such as Soft-RoCE, or `numa_node` = -1 on one-node machines).
    public var numaNode: Int?
    /// Network interfaces that carry this device's traffic (RoCE netdevs, IPoIB interfaces).
    public var netDevices: [String]
    public var ports: [Port]
    /// Why the device could be listed but not queried (permissions on /dev/infiniband, ...).
    public var unavailableReason: String?

    public init(
        name: String, nodeGUID: UInt64 = 0, nodeType: String = "", firmwareVersion: String = "",
        maxMemoryRegionSize: UInt64 = 0, maxQueuePairWorkRequests: Int = 0, maxCompletionQueueEntries: Int = 0,
        numaNode: Int? = nil, netDevices: [String] = [], ports: [Port] = [], unavailableReason: String? = nil
    ) {
        self.name = name
        self.nodeGUID = nodeGUID
        self.nodeType = nodeType
        self.firmwareVersion = firmwareVersion
        self.maxMemoryRegionSize = maxMemoryRegionSize
        self.maxQueuePairWorkRequests = maxQueuePairWorkRequests
        self.maxCompletionQueueEntries = maxCompletionQueueEntries
        self.numaNode = numaNode
        self.netDevices = netDevices
        self.ports = ports
        self.unavailableReason = unavailableReason
    }

    /// The GUID as InfiniBand tools print it: `0002:c903:0042:aa10`.
    public var nodeGUIDString: String {
        (0..<4).map { group in
            let value = UInt16(truncatingIfNeeded: nodeGUID >> (48 - 16 * UInt64(group)))
            let hex = String(value, radix: 16)
            return String(repeating: "0", count: 4 - hex.count) + hex
        }.joined(separator: ":")
    }

    public var description: String {
        if let unavailableReason { return "\(name): \(unavailableReason)" }
        let portText = ports.map(\.description).joined(separator: "; ")
        let numa = numaNode.map { "NUMA node \($0)" } ?? "NUMA node unknown"
        // Soft-RoCE reports 2^64-1: no limit of its own.
        let maxMR = maxMemoryRegionSize == UInt64.max ? "no limit" : ByteCount(maxMemoryRegionSize).humanReadable
        return "\(name) (\(nodeType), GUID \(nodeGUIDString), \(numa), max MR \(maxMR)): \(portText)"
    }

    /// Every RDMA device on this machine; `[]` means "no RDMA device found".
    ///
    /// `ibv_get_device_list` returns NULL when the kernel has no RDMA support at all (ENOSYS)
    /// and an empty list when it has support but no device: both are the normal "no RDMA here"
    /// answer, not an error. Only running out of memory is thrown.
    public static func list() throws(TransportError) -> [RDMADevice] {
        var count: Int32 = 0
        SystemCall.setErrno(0)
        guard let list = ibv_get_device_list(&count) else {
            let error = SystemCall.currentErrno()
            if error == ENOMEM { throw .system(SystemCallError(call: "ibv_get_device_list", errno: error)) }
            return []
        }
        defer { ibv_free_device_list(list) }
        var devices: [RDMADevice] = []
        for index in 0..<Int(count) {
            guard let device = list[index] else { continue }
            devices.append(describe(device))
        }
        return devices
    }

    private static func describe(_ device: UnsafeMutablePointer<ibv_device>) -> RDMADevice {
        let name = String(cString: ibv_get_device_name(device))
        var result = RDMADevice(name: name)
        result.nodeGUID = UInt64(bigEndian: ibv_get_device_guid(device))
        result.nodeType = String(cString: ibv_node_type_str(device.pointee.node_type))
        result.numaNode = RDMADeviceSysfs.integer("/sys/class/infiniband/\(name)/device/numa_node").flatMap { $0 < 0 ? nil : $0 }
        SystemCall.setErrno(0)
        guard let context = ibv_open_device(device) else {
            let error = SystemCallError(call: "ibv_open_device", errno: SystemCall.currentErrno(), context: name)
            result.unavailableReason = "\(error) (check permissions on /dev/infiniband/uverbs*)"
            return result
        }
        defer { ibv_close_device(context) }
        var attributes = ibv_device_attr()
        let queried = ibv_query_device(context, &attributes)
        if queried != 0 {
            result.unavailableReason = SystemCallError(call: "ibv_query_device", errno: queried, context: name).description
            return result
        }
        result.firmwareVersion = withUnsafeBytes(of: attributes.fw_ver) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        result.maxMemoryRegionSize = attributes.max_mr_size
        result.maxQueuePairWorkRequests = Int(attributes.max_qp_wr)
        result.maxCompletionQueueEntries = Int(attributes.max_cqe)
        var netDevices: [String] = []
        let portCount = attributes.phys_port_cnt
        if portCount > 0 {
            for number in 1...portCount {
                var portAttributes = ibv_port_attr()
                // ibv_query_port is a macro over the compat symbol; FACTS.md: call ___ibv_query_port.
                guard ___ibv_query_port(context, number, &portAttributes) == 0 else { continue }
                var gid = ibv_gid()
                let gidText = ibv_query_gid(context, number, 0, &gid) == 0 ? format(gid: gid) : "unknown"
                result.ports.append(Port(
                    number: number,
                    state: Port.State(portAttributes.state),
                    linkLayer: Port.LinkLayer(portAttributes.link_layer),
                    activeMTU: bytes(of: portAttributes.active_mtu),
                    maxMTU: bytes(of: portAttributes.max_mtu),
                    gid0: gidText,
                    lid: portAttributes.lid,
                    gidTableLength: Int(portAttributes.gid_tbl_len),
                    maxMessageSize: portAttributes.max_msg_sz))
                netDevices += gidNetDevices(device: name, port: number, tableLength: Int(portAttributes.gid_tbl_len))
            }
        }
        // PCI NICs list their interfaces next to the RDMA device (mlx5, IPoIB on the same function).
        netDevices += RDMADeviceSysfs.directoryEntries("/sys/class/infiniband/\(name)/device/net")
        var seen = Set<String>()
        result.netDevices = netDevices.filter { seen.insert($0).inserted }
        return result
    }

    /// RoCE devices name the netdev behind each GID (ib_core's gid_attrs); Soft-RoCE has no
    /// PCI function, so this is where its netdev shows up.
    private static func gidNetDevices(device: String, port: UInt8, tableLength: Int) -> [String] {
        (0..<min(tableLength, 8)).compactMap { index in
            RDMADeviceSysfs.string("/sys/class/infiniband/\(device)/ports/\(port)/gid_attrs/ndevs/\(index)")
        }
    }

    static func bytes(of mtu: ibv_mtu) -> Int {
        switch mtu {
        case IBV_MTU_256: return 256
        case IBV_MTU_512: return 512
        case IBV_MTU_1024: return 1024
        case IBV_MTU_2048: return 2048
        case IBV_MTU_4096: return 4096
        default: return 0
        }
    }

    static func format(gid: ibv_gid) -> String {
        var raw = gid.raw
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = withUnsafeBytes(of: &raw) { bytes in
            inet_ntop(AF_INET6, bytes.baseAddress, &text, socklen_t(text.count)) != nil
        }
        guard ok else { return "unknown" }
        return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    /// IPv4 addresses of this device's network interfaces, in interface order: where rdma_cm
    /// can bind and listen (the address a Soft-RoCE guest's conformance run uses).
    public var ipv4Addresses: [String] {
        InterfaceAddresses.ipv4(of: netDevices)
    }
}
