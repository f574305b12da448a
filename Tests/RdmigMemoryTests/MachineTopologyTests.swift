import Foundation
import Testing
import RdmigSystem
@testable import RdmigMemory

@Suite struct ThisMachine {
    @Test func nodesAreTheOnesTheKernelListsAndAOneNodeMachineSaysSo() throws {
        let topology = MachineTopology.discover()
        let kernelNodes = SysfsTree().list("devices/system/node").filter {
            $0.hasPrefix("node") && Int($0.dropFirst(4)) != nil
        }.compactMap { Int($0.dropFirst(4)) }.sorted()
        #expect(topology.nodeIDs == kernelNodes)
        #expect(topology.source.hasPrefix("hwloc 2."))
        for node in topology.nodes {
            #expect(node.memoryTotal > 0)
            #expect(!node.cpus.isEmpty)
        }
        if kernelNodes.count == 1 {
            #expect(topology.isSingleNode)
            #expect(topology.summary == "1 NUMA node (\(kernelNodes[0])): every CPU, memory and device is local to it")
            #expect(topology.notes.contains("one NUMA node: buffers and threads are local to every device"))
            #expect(try topology.chooseNode(.auto) == NodeChoice(node: kernelNodes[0], reason: "the only node"))
        }
    }

    @Test func everyInterfaceIsListedWithItsNodeOrAsVirtual() throws {
        let topology = MachineTopology.discover()
        let names = SysfsTree().list("class/net")
        #expect(topology.interfaces.map(\.name) == names)
        for interface in topology.interfaces {
            let physical = SysfsTree().exists("class/net/\(interface.name)/device")
            if physical {
                #expect(interface.source != .virtual)
                if topology.isSingleNode { #expect(interface.node == topology.nodes[0].id) }
            } else {
                #expect(interface.source == .virtual)
                #expect(interface.node == nil)
                #expect(interface.nodeDescription == "none (virtual)")
            }
        }
        let loopback = try #require(topology.locality(of: "lo"))
        #expect(loopback.description == "lo: none (virtual) [virtual]")
    }

    @Test func memlockAndHugePagesAreWhatTheKernelSays() throws {
        let topology = MachineTopology.discover()
        let limit = Privileges.memlockSoftLimit()
        #expect(topology.memlock.soft == (limit.rlim_cur == rlim_t.max ? nil : UInt64(limit.rlim_cur)))
        #expect(topology.memlock.hard == (limit.rlim_max == rlim_t.max ? nil : UInt64(limit.rlim_max)))
        let twoMiB = try #require(topology.hugePages.first { $0.pageSize == .huge2MiB })
        let kernelTotal = try #require(KernelAnswers.readText("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"))
        #expect(String(twoMiB.total) == kernelTotal.filter { !$0.isWhitespace })
    }

    @Test func jsonHasTheProbeFieldsAndReadsBack() throws {
        let topology = MachineTopology.discover()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(topology)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == [
            "summary", "nodes", "allowed-cpus", "interfaces", "rdma-devices", "memlock", "huge-pages", "source", "notes",
        ])
        let memlock = try #require(object["memlock"] as? [String: Any])
        #expect(memlock["soft"] != nil && memlock["cap-ipc-lock"] != nil)
        let interfaces = try #require(object["interfaces"] as? [[String: Any]])
        let loopback = try #require(interfaces.first { $0["name"] as? String == "lo" })
        #expect(loopback["node-description"] as? String == "none (virtual)")
        #expect(loopback["node"] is NSNull)
        #expect(try JSONDecoder().decode(MachineTopology.self, from: data) == topology)
    }
}

@Suite struct TwoNodeMachineFromSysfs {
    @Test func nodesCPUsAndMemoryComeFromSysfs() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: nil, sysfs: machine.sysfs)
        #expect(topology.source == "sysfs")
        #expect(topology.nodeIDs == [0, 1])
        #expect(topology.nodes.map(\.cpus) == [[0, 1], [2, 3]])
        #expect(topology.nodes[1].memoryTotal == 8 << 30)
        #expect(topology.nodes[1].memoryFree == 2 << 30)
        #expect(topology.summary == "2 NUMA nodes (0, 1)")
    }

    @Test func aPCINICIsOnItsNodeWithItsLocalCPUs() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: nil, sysfs: machine.sysfs)
        let nic = try #require(topology.locality(of: "ib0"))
        #expect(nic == DeviceLocality(
            name: "ib0", kind: .networkInterface, node: 1, nodes: [1], cpus: [2, 3],
            pciAddress: "0000:81:00.0", source: .sysfs))
        let rdma = try #require(topology.locality(of: "mlx5_0"))
        #expect(rdma.kind == .rdmaDevice && rdma.node == 1 && rdma.pciAddress == "0000:81:00.0")
    }

    @Test func virtioNICFindsNumaNodeOnItsPCIParentAndReportsNoAffinity() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: nil, sysfs: machine.sysfs)
        let eth0 = try #require(topology.locality(of: "eth0"))
        #expect(eth0.node == nil)
        #expect(eth0.pciAddress == "0000:00:03.0")
        #expect(eth0.cpus == [0, 1, 2, 3])
        #expect(eth0.nodeDescription == "none (no NUMA affinity reported)")
    }

    @Test func softRoCEDeviceTakesTheLocalityOfItsInterface() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: nil, sysfs: machine.sysfs)
        let rxe = try #require(topology.locality(of: "rxe0"))
        #expect(rxe.kind == .rdmaDevice)
        #expect(rxe.via == "eth0")
        #expect(rxe.pciAddress == "0000:00:03.0")
        #expect(topology.rdmaDevices.map(\.name) == ["mlx5_0", "rxe0"])
    }

    @Test func softwareInterfacesAreVirtual() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: nil, sysfs: machine.sysfs)
        #expect(topology.interfaces.map(\.name) == ["eth0", "ib0", "lo", "veth7"])
        #expect(topology.locality(of: "veth7")?.nodeDescription == "none (virtual)")
        #expect(topology.locality(of: "lo")?.source == .virtual)
    }

    @Test func autoPicksTheNICsNodeAndAFixedNodeMustExist() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: nil, sysfs: machine.sysfs)
        #expect(try topology.chooseNode(.auto, device: "ib0") == NodeChoice(node: 1, reason: "local to ib0"))
        #expect(try topology.chooseNode(.node(0), device: "ib0")
            == NodeChoice(node: 0, reason: "configured; note that ib0 is on node 1"))
        let noAffinity = try topology.chooseNode(.auto, device: "eth0")
        #expect(noAffinity.reason.hasPrefix("eth0 reports none (no NUMA affinity reported); "))
        #expect(throws: MemoryError.noSuchNode(requested: 5, existing: [0, 1])) {
            try topology.chooseNode(.node(5))
        }
        #expect(MemoryError.noSuchNode(requested: 5, existing: [0, 1]).description
            == "NUMA node 5 does not exist: this machine has nodes 0, 1; set the node to auto or to one of them")
        #expect(throws: MemoryError.noSuchDevice("ib7", known: ["eth0", "ib0", "lo", "veth7", "mlx5_0", "rxe0"])) {
            try topology.chooseNode(.auto, device: "ib7")
        }
    }
}

@Suite struct TwoNodeMachineFromHwloc {
    @Test func pciLocalityComesFromTheHwlocIOTree() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: .xml(FakeMachine.hwlocXML), sysfs: machine.sysfs)
        #expect(topology.source.hasPrefix("hwloc "))
        #expect(topology.nodeIDs == [0, 1])
        #expect(topology.nodes.map(\.cpus) == [[0, 1], [2, 3]])
        #expect(topology.nodes[0].memoryTotal == 8 << 30)
        let nic = try #require(topology.locality(of: "ib0"))
        #expect(nic == DeviceLocality(
            name: "ib0", kind: .networkInterface, node: 1, nodes: [1], cpus: [2, 3],
            pciAddress: "0000:81:00.0", source: .hwloc))
        let rdma = try #require(topology.locality(of: "mlx5_0"))
        #expect(rdma.source == .hwloc && rdma.node == 1 && rdma.kind == .rdmaDevice)
    }

    @Test func aDeviceAboveSeveralNodesHasNoSingleNode() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: .xml(FakeMachine.hwlocXML), sysfs: machine.sysfs)
        let eth9 = try #require(topology.locality(of: "eth9"))
        #expect(eth9.source == .hwloc)
        #expect(eth9.node == nil)
        #expect(eth9.nodes == [0, 1])
        #expect(eth9.nodeDescription == "nodes 0-1 (attached above several nodes)")
        // Devices hwloc does not list still come from sysfs.
        #expect(topology.locality(of: "eth0")?.source == .sysfs)
        #expect(topology.locality(of: "veth7")?.source == .virtual)
    }

    @Test func brokenHwlocInputFallsBackToSysfsAndSaysSo() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: .xml("<not-a-topology/>"), sysfs: machine.sysfs)
        #expect(topology.source == "sysfs")
        #expect(topology.nodeIDs == [0, 1])
        #expect(topology.notes.contains { $0.hasPrefix("hwloc could not load the topology") })
        #expect(topology.locality(of: "ib0")?.node == 1)
    }

    @Test func syntheticTopologyGivesNodesWithoutIO() throws {
        let machine = try FakeMachine()
        let topology = MachineTopology.discover(hwloc: .synthetic("pack:2 [numa] core:2 pu:1"), sysfs: machine.sysfs)
        #expect(topology.nodeIDs == [0, 1])
        #expect(topology.nodes.map(\.cpus) == [[0, 1], [2, 3]])
        #expect(topology.locality(of: "ib0")?.source == .sysfs)
    }
}
