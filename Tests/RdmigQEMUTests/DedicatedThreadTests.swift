import Testing
import RdmigQEMU
import RdmigSystem

@Suite struct DedicatedThreadTests {
    /// The QEMU-mode relays run on the hot-path CPUs this way.
    @Test func theThreadRunsOnlyOnTheCPUsItWasGiven() async throws {
        let cpus = try await DedicatedThread.run(name: "test-pinned", cpus: [0]) { try SystemThread.currentAffinity() }
        #expect(cpus == [0])
        let anywhere = try await DedicatedThread.run(name: "test-free") { try SystemThread.currentAffinity() }
        #expect(anywhere == (try SystemThread.currentAffinity()), "no CPUs given: the process's own affinity")
    }
}
