import CRDMA
import Testing
@testable import RdmigTransport

@Suite struct VerbsDeviceDiscovery {
    @Test func listsExactlyTheDevicesTheKernelHas() throws {
        let devices = try RDMADevice.list()
        #expect(devices.map(\.name).sorted() == VerbsTestEnvironment.sysfsDeviceNames)
    }

    @Test(.enabled(if: !VerbsTestEnvironment.hasDevice, "this machine has an RDMA device"))
    func aMachineWithoutRDMAListsNoDeviceAndNoError() throws {
        #expect(try RDMADevice.list().isEmpty)
    }

    @Test(.enabled(if: VerbsTestEnvironment.hasDevice, "no RDMA device on this machine"))
    func everyListedDeviceHasPortsAndLimits() throws {
        for device in try RDMADevice.list() {
            #expect(device.unavailableReason == nil, "\(device.name): \(device.unavailableReason ?? "")")
            #expect(!device.ports.isEmpty, "\(device.name) reports no ports")
            #expect(device.maxMemoryRegionSize > 0 && device.maxQueuePairWorkRequests > 0)
        }
    }

    @Test func guidAndGIDAreWrittenTheWayInfiniBandToolsWriteThem() {
        var device = RDMADevice(name: "mlx5_0")
        device.nodeGUID = 0x0002_c903_0042_aa10
        #expect(device.nodeGUIDString == "0002:c903:0042:aa10")
        var gid = ibvGID([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x11, 0x22, 0xff, 0xfe, 0x33, 0x44, 0x55])
        #expect(RDMADevice.format(gid: gid) == "fe80::211:22ff:fe33:4455")
        gid = ibvGID([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 2, 15])
        #expect(RDMADevice.format(gid: gid) == "::ffff:10.0.2.15")
    }

    @Test func portMTUsAreReportedInBytes() {
        #expect(RDMADevice.bytes(of: IBV_MTU_1024) == 1024)
        #expect(RDMADevice.bytes(of: IBV_MTU_4096) == 4096)
    }
}
