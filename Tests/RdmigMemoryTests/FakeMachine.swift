import Foundation
@testable import RdmigMemory

/// A sysfs tree in a temporary directory describing a machine this one is not: two NUMA
/// nodes, a ConnectX-like NIC (ib0 / mlx5_0) on node 1, a virtio NIC whose PCI device
/// reports no affinity, a software RDMA device over it, and virtual interfaces. Removed
/// when the value goes away.
final class FakeMachine {
    let root: String
    var sysfs: SysfsTree { SysfsTree(root: root) }

    init(hugePages2MiBFree: Int = 0) throws {
        root = NSTemporaryDirectory() + "rdmig-sysfs-\(UUID().uuidString)"
        try file("devices/system/node/online", "0-1")
        try file("devices/system/node/node0/cpulist", "0-1")
        try file("devices/system/node/node1/cpulist", "2-3")
        try file("devices/system/node/node0/meminfo", "Node 0 MemTotal:       8388608 kB\nNode 0 MemFree:        4194304 kB\n")
        try file("devices/system/node/node1/meminfo", "Node 1 MemTotal:       8388608 kB\nNode 1 MemFree:        2097152 kB\n")
        for node in 0...1 {
            try file("devices/system/node/node\(node)/hugepages/hugepages-2048kB/nr_hugepages", "\(hugePages2MiBFree)")
            try file("devices/system/node/node\(node)/hugepages/hugepages-2048kB/free_hugepages", "\(hugePages2MiBFree)")
        }
        try file("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "\(2 * hugePages2MiBFree)")
        try file("kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "\(2 * hugePages2MiBFree)")
        try file("kernel/mm/hugepages/hugepages-2048kB/resv_hugepages", "0")

        // A PCI NIC on node 1: both its netdev and its RDMA device link to the PCI function.
        let nic = "devices/pci0000:80/0000:80:01.0/0000:81:00.0"
        try file("\(nic)/numa_node", "1")
        try file("\(nic)/local_cpulist", "2-3")
        try link("class/net/ib0/device", to: nic)
        try link("class/infiniband/mlx5_0/device", to: nic)

        // virtio-net: the netdev links to virtio3, whose PCI parent has numa_node -1.
        let virtio = "devices/pci0000:00/0000:00:03.0"
        try file("\(virtio)/numa_node", "-1")
        try file("\(virtio)/local_cpulist", "0-3")
        try file("\(virtio)/virtio3/features", "0")
        try link("class/net/eth0/device", to: "\(virtio)/virtio3")

        // Soft-RoCE over eth0: no device link, a `parent` attribute naming the netdev.
        try file("class/infiniband/rxe0/parent", "eth0")

        // Software interfaces have no device link.
        try directory("class/net/lo")
        try directory("class/net/veth7")
    }

    deinit {
        try? FileManager.default.removeItem(atPath: root)
    }

    func file(_ relative: String, _ contents: String) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try (contents + "\n").write(toFile: path, atomically: false, encoding: .utf8)
    }

    func directory(_ relative: String) throws {
        try FileManager.default.createDirectory(atPath: root + "/" + relative, withIntermediateDirectories: true)
    }

    func link(_ relative: String, to target: String) throws {
        let path = root + "/" + relative
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/" + target, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: path, withDestinationPath: root + "/" + target)
    }

    /// An hwloc XML export of the same machine's shape: two packages, each with a NUMA node
    /// and two PUs; the NIC's PCI function hangs below package 1, a second NIC (eth9) below
    /// the machine itself (no locality).
    static let hwlocXML = """
        <?xml version="1.0" encoding="UTF-8"?>
        <!DOCTYPE topology SYSTEM "hwloc2.dtd">
        <topology version="2.0">
          <object type="Machine" os_index="0" cpuset="0x0000000f" complete_cpuset="0x0000000f" allowed_cpuset="0x0000000f" nodeset="0x00000003" complete_nodeset="0x00000003" allowed_nodeset="0x00000003" gp_index="1">
            <object type="Package" os_index="0" cpuset="0x00000003" complete_cpuset="0x00000003" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="2">
              <object type="NUMANode" os_index="0" cpuset="0x00000003" complete_cpuset="0x00000003" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="3" local_memory="8589934592"/>
              <object type="Core" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="4">
                <object type="PU" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="5"/>
              </object>
              <object type="Core" os_index="1" cpuset="0x00000002" complete_cpuset="0x00000002" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="6">
                <object type="PU" os_index="1" cpuset="0x00000002" complete_cpuset="0x00000002" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="7"/>
              </object>
            </object>
            <object type="Package" os_index="1" cpuset="0x0000000c" complete_cpuset="0x0000000c" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="8">
              <object type="NUMANode" os_index="1" cpuset="0x0000000c" complete_cpuset="0x0000000c" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="9" local_memory="8589934592"/>
              <object type="Core" os_index="2" cpuset="0x00000004" complete_cpuset="0x00000004" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="10">
                <object type="PU" os_index="2" cpuset="0x00000004" complete_cpuset="0x00000004" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="11"/>
              </object>
              <object type="Core" os_index="3" cpuset="0x00000008" complete_cpuset="0x00000008" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="12">
                <object type="PU" os_index="3" cpuset="0x00000008" complete_cpuset="0x00000008" nodeset="0x00000002" complete_nodeset="0x00000002" gp_index="13"/>
              </object>
              <object type="Bridge" gp_index="14" bridge_type="0-1" depth="0" bridge_pci="0000:[81-81]">
                <object type="PCIDev" gp_index="15" pci_busid="0000:81:00.0" pci_type="0207 [15b3:101b] [15b3:0007] 00" pci_link_speed="15.753846">
                  <object type="OSDev" gp_index="16" name="ib0" osdev_type="2"/>
                  <object type="OSDev" gp_index="17" name="mlx5_0" osdev_type="3"/>
                </object>
              </object>
            </object>
            <object type="Bridge" gp_index="18" bridge_type="0-1" depth="0" bridge_pci="0000:[00-00]">
              <object type="PCIDev" gp_index="19" pci_busid="0000:00:03.0" pci_type="0200 [1af4:1041] [1af4:1041] 01" pci_link_speed="0.000000">
                <object type="OSDev" gp_index="20" name="eth9" osdev_type="2"/>
              </object>
            </object>
          </object>
        </topology>
        """
}
