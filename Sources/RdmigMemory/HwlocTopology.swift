import CHwloc

/// A loaded hwloc topology (hwloc 2.x): NUMA nodes and the I/O tree, owned and destroyed
/// with the value.
///
/// I/O objects are off by default in hwloc 2; the filter HWLOC_TYPE_FILTER_KEEP_IMPORTANT
/// keeps PCI devices of the classes that matter here (network, InfiniBand) with the bridges
/// above them and their OS devices (`eth0`, `mlx5_0`), which is what PCI locality needs
/// (hwloc doc "I/O Devices"). An OS device's first non-I/O ancestor carries the cpuset and
/// nodeset it is local to.
public struct HwlocTopology: ~Copyable {
    /// Where the topology comes from.
    public enum Source: Sendable, Equatable {
        /// This machine, as hwloc discovers it (sysfs, /proc).
        case system
        /// An hwloc synthetic description such as "pack:2 [numa] core:2 pu:1" (no I/O).
        case synthetic(String)
        /// An hwloc XML export (e.g. from `lstopo machine.xml` on another host).
        case xml(String)
    }

    /// An OS device that hwloc found (network interface or OpenFabrics/RDMA device).
    public struct OSDevice: Sendable, Equatable {
        public var name: String
        public var kind: DeviceLocality.Kind
        public var nodes: [Int]
        public var cpus: [Int32]
        public var pciAddress: String?
    }

    private let topology: hwloc_topology_t

    public init(_ source: Source = .system) throws(MemoryError) {
        var handle: hwloc_topology_t?
        guard hwloc_topology_init(&handle) == 0, let handle else {
            throw .topologyUnavailable("hwloc_topology_init failed: cannot describe the machine with hwloc")
        }
        var status: Int32 = 0
        switch source {
        case .system:
            break
        case .synthetic(let description):
            status = hwloc_topology_set_synthetic(handle, description)
        case .xml(let text):
            // The length includes the terminating NUL (hwloc/hwloc.h, hwloc_topology_set_xmlbuffer).
            status = text.withCString { hwloc_topology_set_xmlbuffer(handle, $0, Int32(text.utf8.count + 1)) }
        }
        if status == 0 {
            status = hwloc_topology_set_io_types_filter(handle, HWLOC_TYPE_FILTER_KEEP_IMPORTANT)
        }
        if status == 0 {
            status = hwloc_topology_load(handle)
        }
        if status != 0 {
            hwloc_topology_destroy(handle)
            throw .topologyUnavailable("hwloc could not load the topology (\(source)): falling back to sysfs")
        }
        topology = handle
    }

    deinit {
        hwloc_topology_destroy(topology)
    }

    /// The hwloc library version that discovered the topology (the root object's
    /// "hwlocVersion" info, e.g. "2.9.0"); nil for synthetic topologies and exports without it.
    public var version: String? {
        guard let root = hwloc_get_root_obj(topology),
              let value = hwloc_obj_get_info_by_name(root, "hwlocVersion")
        else { return nil }
        return String(cString: value)
    }

    /// The NUMA nodes with their CPUs (OS numbers) and bytes of local memory.
    public func numaNodes() -> [(id: Int, cpus: [Int32], memory: UInt64)] {
        let count = hwloc_get_nbobjs_by_type(topology, HWLOC_OBJ_NUMANODE)
        guard count > 0 else { return [] }
        return (0..<UInt32(count)).compactMap { index in
            guard let node = hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, index) else { return nil }
            let memory = node.pointee.attr.pointee.numanode.local_memory
            return (Int(node.pointee.os_index), Self.members(node.pointee.cpuset).map(Int32.init), memory)
        }.sorted { $0.id < $1.id }
    }

    /// Network interfaces and RDMA devices hwloc sees in its I/O tree.
    public func osDevices() -> [OSDevice] {
        var devices: [OSDevice] = []
        var current = hwloc_get_next_osdev(topology, nil)
        while let device = current {
            current = hwloc_get_next_osdev(topology, device)
            let type = device.pointee.attr.pointee.osdev.type
            let kind: DeviceLocality.Kind
            if type == HWLOC_OBJ_OSDEV_NETWORK {
                kind = .networkInterface
            } else if type == HWLOC_OBJ_OSDEV_OPENFABRICS {
                kind = .rdmaDevice
            } else {
                continue
            }
            guard let rawName = device.pointee.name,
                  let ancestor = hwloc_get_non_io_ancestor_obj(topology, device)
            else { continue }
            devices.append(OSDevice(
                name: String(cString: rawName), kind: kind,
                nodes: Self.members(ancestor.pointee.nodeset),
                cpus: Self.members(ancestor.pointee.cpuset).map(Int32.init),
                pciAddress: Self.pciAddress(above: device)))
        }
        return devices
    }

    private static func pciAddress(above device: hwloc_obj_t) -> String? {
        var current = device.pointee.parent
        while let object = current {
            if object.pointee.type == HWLOC_OBJ_PCI_DEVICE {
                let pci = object.pointee.attr.pointee.pcidev
                return hex(Int(pci.domain), width: 4) + ":" + hex(Int(pci.bus), width: 2) + ":"
                    + hex(Int(pci.dev), width: 2) + "." + hex(Int(pci.func), width: 1)
            }
            current = object.pointee.parent
        }
        return nil
    }

    private static func hex(_ value: Int, width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    private static func members(_ bitmap: hwloc_const_bitmap_t?) -> [Int] {
        guard let bitmap, hwloc_bitmap_weight(bitmap) > 0 else { return [] }
        var result: [Int] = []
        var index = hwloc_bitmap_first(bitmap)
        while index >= 0 {
            result.append(Int(index))
            index = hwloc_bitmap_next(bitmap, index)
        }
        return result
    }
}
