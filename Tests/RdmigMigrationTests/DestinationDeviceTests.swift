import Testing
import RdmigChannels
import RdmigDeviceState
@testable import RdmigMigration

@Suite struct DestinationDeviceTests {
    func layout(_ kind: String, version: UInt32) -> MigrationMessage.DeviceLayout {
        .init(id: 1, kind: kind, stateVersion: version, needsSwitchoverAck: false)
    }

    @Test func aDeviceTheSourceAnnouncesIsReadyToLoadItsState() throws {
        let version = try DeviceStateProviders.make(spec: "ib-sw:qps=4").streamVersion
        let provider = try DestinationDevice.resumingProvider(for: layout("ib-sw:qps=4", version: version))
        #expect(provider.state == .resuming)
    }

    @Test func anotherStateFormatVersionIsRefusedNamingBoth() throws {
        let version = try DeviceStateProviders.make(spec: "ib-sw:qps=4").streamVersion
        let error = #expect(throws: MigrationError.self) {
            try DestinationDevice.resumingProvider(for: layout("ib-sw:qps=4", version: version + 1))
        }
        #expect(error?.description.contains("the source streams state version \(version + 1), this side loads \(version)") == true,
                "\(String(describing: error))")
    }

    @Test func aKindThisSideCannotLoadIsNamed() {
        let error = #expect(throws: MigrationError.self) {
            try DestinationDevice.resumingProvider(for: layout("nic-9000", version: 1))
        }
        #expect(error?.description.contains("VF nic-9000") == true, "\(String(describing: error))")
    }
}
