import Foundation
import Testing
import RdmigSystem
@testable import RdmigMemory

@Suite struct MemoryProbeReport {
    func twoNodeTopology(_ machine: FakeMachine, memlock: MemlockLimit) -> MachineTopology {
        var topology = MachineTopology.discover(hwloc: .xml(FakeMachine.hwlocXML), sysfs: machine.sysfs)
        topology.allowedCPUs = [0, 1, 2, 3]
        topology.memlock = memlock
        return topology
    }

    @Test func saysWhereThePoolAndThreadsWouldGoAndThatTheLimitIsTooSmall() throws {
        let machine = try FakeMachine(hugePages2MiBFree: 0)
        let memlock = MemlockLimit(soft: 8 << 20, hard: 8 << 20, locked: 0, capIPCLock: false)
        let probe = MemoryProbe.run(
            configuration: MemoryConfiguration(), device: "ib0",
            topology: twoNodeTopology(machine, memlock: memlock), sysfs: machine.sysfs)
        #expect(probe.node == NodeChoice(node: 1, reason: "local to ib0"))
        #expect(probe.threads?.cpus == [2, 3])
        let pool = try #require(probe.pool)
        #expect(pool.pageSize == .base4KiB)
        #expect(pool.slabCount == 1024)
        #expect(pool.fallbackReason?.hasPrefix("4 KiB pages: 0 free 2 MiB huge pages on node 1, 32 needed") == true)
        #expect(!pool.fitsMemlockLimit)
        #expect(probe.problems == [
            "memlock limit 8.00 MiB is below the 64.00 MiB pool: raise LimitMEMLOCK (systemd) / `ulimit -l`, or run with CAP_IPC_LOCK",
        ])
    }

    @Test func hugePagesOnTheNodeAndCapIPCLockMakeAPlanWithoutProblems() throws {
        let machine = try FakeMachine(hugePages2MiBFree: 32)
        let memlock = MemlockLimit(soft: 8 << 20, hard: 8 << 20, locked: 0, capIPCLock: true)
        let probe = MemoryProbe.run(
            configuration: MemoryConfiguration(), device: "mlx5_0",
            topology: twoNodeTopology(machine, memlock: memlock), sysfs: machine.sysfs)
        #expect(probe.pool?.pageSize == .huge2MiB)
        #expect(probe.pool?.fallbackReason == nil)
        #expect(probe.pool?.fitsMemlockLimit == true)
        #expect(probe.problems.isEmpty)
        let data = try JSONEncoder().encode(probe)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(Set(object.keys) == ["topology", "configuration", "device", "node", "threads", "pool", "problems"])
        #expect(try JSONDecoder().decode(MemoryProbe.self, from: data) == probe)
    }

    @Test func aMissingNodeIsListedAsAProblem() throws {
        let machine = try FakeMachine()
        let memlock = MemlockLimit(soft: nil, hard: nil, locked: 0, capIPCLock: false)
        let probe = MemoryProbe.run(
            configuration: MemoryConfiguration(node: .node(5)), topology: twoNodeTopology(machine, memlock: memlock),
            sysfs: machine.sysfs)
        #expect(probe.node == nil && probe.threads == nil)
        #expect(probe.problems == [MemoryError.noSuchNode(requested: 5, existing: [0, 1]).description])
        #expect(probe.pool?.fitsMemlockLimit == true)
    }
}
