import Synchronization
import Testing
import RdmigSystem
@testable import RdmigMemory

@Suite struct ThreadPlacementOnThisMachine {
    @Test func autoUsesTheCPUsOfTheChosenNodeAndEachThreadIsPinnedToOne() throws {
        let topology = MachineTopology.discover()
        let node = try topology.chooseNode(.auto)
        let placement = try ThreadPlacement.choose(.auto, node: node, topology: topology)
        let expected = (topology.node(node.node)?.cpus ?? []).filter { topology.allowedCPUs.contains($0) }
        #expect(placement.cpus == expected)
        #expect(placement.source == .node)
        #expect(placement.warning == nil)

        let seen = Mutex<[Int: [Int32]]>([:])
        var threads: [SystemThread] = []
        for index in 0..<placement.cpus.count {
            threads.append(try placement.startThread(index: index, name: "poll-\(index)") {
                let affinity = (try? SystemThread.currentAffinity()) ?? []
                seen.withLock { $0[index] = affinity }
            })
        }
        for thread in threads { thread.join() }
        let affinities = seen.withLock { $0 }
        for index in 0..<placement.cpus.count {
            #expect(affinities[index] == [placement.cpu(forThread: index)], "thread \(index)")
        }
    }

    @Test func aConfiguredCPUIsTheOnlyOneTheThreadRunsOn() throws {
        let topology = MachineTopology.discover()
        let cpu = try #require(topology.allowedCPUs.last)
        let placement = try ThreadPlacement.choose(
            try CPUSelection(parsing: "\(cpu)"), node: try topology.chooseNode(.auto), topology: topology)
        #expect(placement.source == .configured)
        #expect(placement.cpu(forThread: 0) == cpu && placement.cpu(forThread: 5) == cpu)
        let seen = Mutex<[Int32]>([])
        let thread = try placement.startThread(index: 0, name: "copy-0") {
            seen.withLock { $0 = (try? SystemThread.currentAffinity()) ?? [] }
        }
        thread.join()
        #expect(seen.withLock { $0 } == [cpu])
        // The starting thread itself is not moved.
        #expect(try SystemThread.currentAffinity() == topology.allowedCPUs)
    }

    @Test func aCPUThisProcessMayNotUseIsRefusedByName() throws {
        let topology = MachineTopology.discover()
        #expect(throws: MemoryError.cpuNotAllowed(requested: [4095], allowed: topology.allowedCPUs)) {
            _ = try ThreadPlacement.choose(.cpus([0, 4095]), node: try topology.chooseNode(.auto), topology: topology)
        }
        #expect(MemoryError.cpuNotAllowed(requested: [4095], allowed: [0, 1]).description
            == "CPUs 4095 are not available to this process: it may run on 0-1; "
                + "set the thread CPUs to auto or to CPUs from that list")
    }
}

@Suite struct ThreadPlacementOnTwoNodes {
    func topology(allowed: [Int32]) throws -> MachineTopology {
        let machine = try FakeMachine()
        var topology = MachineTopology.discover(hwloc: .xml(FakeMachine.hwlocXML), sysfs: machine.sysfs)
        topology.allowedCPUs = allowed
        return topology
    }

    @Test func threadsGoToTheNICsNode() throws {
        let topology = try topology(allowed: [0, 1, 2, 3])
        let node = try topology.chooseNode(.auto, device: "ib0")
        let placement = try ThreadPlacement.choose(.auto, node: node, topology: topology)
        #expect(placement == ThreadPlacement(
            node: 1, cpus: [2, 3], source: .node, reason: "CPUs of node 1 (local to ib0)"))
    }

    @Test func configuredCPUsOffTheNICsNodeWorkWithAWarning() throws {
        let topology = try topology(allowed: [0, 1, 2, 3])
        let node = try topology.chooseNode(.auto, device: "mlx5_0")
        let placement = try ThreadPlacement.choose(.cpus([1, 2]), node: node, topology: topology)
        #expect(placement.cpus == [1, 2])
        #expect(placement.warning
            == "CPUs 1 are not on node 1 (local to mlx5_0), whose CPUs are 2-3: expect cross-node traffic")
    }

    @Test func whenTheNodesCPUsAreNotAllowedAnyAllowedCPUIsUsedWithAWarning() throws {
        let topology = try topology(allowed: [0, 1])
        let node = try topology.chooseNode(.auto, device: "ib0")
        let placement = try ThreadPlacement.choose(.auto, node: node, topology: topology)
        #expect(placement.source == .allowed)
        #expect(placement.cpus == [0, 1])
        #expect(placement.warning
            == "no CPU of node 1 (2-3) is allowed for this process (cgroup cpuset or taskset?): threads run on 0-1")
    }
}
