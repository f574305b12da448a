#if canImport(Glibc)
import Glibc
#endif
import CNUMA
@testable import RdmigMigration
import RdmigMemory
import Testing

/// A destination's guest memory lands on the NUMA node it is bound to (the NIC's): checked
/// with the kernel's own answers, get_mempolicy and move_pages.
@Suite struct GuestMemoryPlacement {
    @Test func guestMemoryPinnedWithANodeIsBoundThereAndEveryPageIsOnIt() throws {
        let node = 0
        let layout = GuestMemoryRegionLayout(id: 0, guestPhysicalBase: 0, length: 16 << 20, pageSize: 4096)
        let memory = try GuestMemory.map(layouts: [layout], pin: true, pinThreads: 2, node: node)
        let region = try memory.region(id: 0)
        let policy = try NUMAPolicy.policy(at: UnsafeRawPointer(region.pagePointer(0)))
        #expect(policy.mode == MPOL_BIND, "mode \(policy.mode)")
        #expect(policy.nodes == [node])
        let sample = stride(from: 0, to: region.pageCount, by: 97).map { UnsafeRawPointer(region.pagePointer($0)) }
        let nodes = try NUMAPolicy.nodes(of: sample)
        #expect(nodes.allSatisfy { $0 == Int32(node) }, "pages on nodes \(Set(nodes))")
    }

    @Test func withoutANodeTheDefaultPolicyStays() throws {
        let layout = GuestMemoryRegionLayout(id: 0, guestPhysicalBase: 0, length: 4 << 20, pageSize: 4096)
        let memory = try GuestMemory.map(layouts: [layout], pin: true)
        let policy = try NUMAPolicy.policy(at: UnsafeRawPointer(try memory.region(id: 0).pagePointer(0)))
        #expect(policy.mode == MPOL_DEFAULT, "mode \(policy.mode)")
    }

    @Test func aNodeWithoutMemoryIsRefusedNamingTheNodeAndTheKey() throws {
        let layout = GuestMemoryRegionLayout(id: 0, guestPhysicalBase: 0, length: 4 << 20, pageSize: 4096)
        #expect {
            _ = try GuestMemory.map(layouts: [layout], pin: true, node: 63)
        } throws: { error in
            "\(error)".contains("NUMA node 63") && "\(error)".contains("[memory] node")
        }
    }
}

/// A destination over tcp locks its guest memory as pages are first written: nothing is
/// faulted in at setup, a written page is resident and locked, an unwritten one is not resident.
@Suite struct GuestMemoryLockOnFault {
    /// Pages of the region resident in memory, from mincore(2).
    static func residentPages(_ region: GuestMemoryRegion) -> Int {
        let pages = region.length / 4096
        var vector = [UInt8](repeating: 0, count: pages)
        _ = mincore(region.pagePointer(0), region.length, &vector)
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }

    @Test func onFaultLocksWithoutFaultingInAndAWrittenPageIsResident() throws {
        let layout = GuestMemoryRegionLayout(id: 0, guestPhysicalBase: 0, length: 32 << 20, pageSize: 4096)
        let memory = try GuestMemory.map(layouts: [layout], pin: true, node: 0, pinOnFault: true)
        let region = try memory.region(id: 0)
        #expect(region.isPinned)
        #expect(Self.residentPages(region) == 0, "on-fault pinning faulted pages in at setup")
        region.pagePointer(100).storeBytes(of: 0xAB, as: UInt8.self)
        #expect(Self.residentPages(region) == 1)
        let prefaulted = try GuestMemory.map(layouts: [layout], pin: true)
        #expect(Self.residentPages(try prefaulted.region(id: 0)) == (32 << 20) / 4096)
    }
}
