import CRdmigShims
import RdmigSystem
import Testing

@testable import RdmigDeviceState

#if canImport(Glibc)
import Glibc
#endif

/// Checks rdmig's use of the VFIO migration uAPI v2 against the values and layouts of
/// torvalds/linux include/uapi/linux/vfio.h (numbers written out here as the header
/// defines them) and against the C header this machine compiles with.
@Suite struct VFIOUAPI {
    @Test func requestNumbersAreTheUAPIsIOEncodings() {
        // _IO(VFIO_TYPE ';' = 0x3B, VFIO_BASE 100 + n): asm-generic encodes direction none and
        // size 0, leaving type << 8 | nr.
        #expect(VFIORequest.deviceFeature == 0x3B75)
        #expect(VFIORequest.deviceFeature == VFIORequest.genericIO(type: UInt8(ascii: ";"), number: 117))
        #expect(VFIORequest.migGetPrecopyInfo == 0x3B79)
        #expect(VFIORequest.migGetPrecopyInfo == VFIORequest.genericIO(type: UInt8(ascii: ";"), number: 121))
        #expect(VFIORequest.deviceBindIOMMUFD == VFIORequest.genericIO(type: 0x3B, number: 118))
        #expect(VFIORequest.deviceReset == VFIORequest.genericIO(type: 0x3B, number: 111))
    }

    @Test func migrationStatesCarryTheUAPIValues() {
        let expected: [DeviceMigrationState: UInt32] = [
            .error: 0, .stop: 1, .running: 2, .stopCopy: 3, .resuming: 4, .runningP2P: 5, .preCopy: 6, .preCopyP2P: 7,
        ]
        for state in DeviceMigrationState.allCases { #expect(state.rawValue == expected[state]) }
        #expect(DeviceMigrationState.error.rawValue == VFIO_DEVICE_STATE_ERROR.rawValue)
        #expect(DeviceMigrationState.stop.rawValue == VFIO_DEVICE_STATE_STOP.rawValue)
        #expect(DeviceMigrationState.running.rawValue == VFIO_DEVICE_STATE_RUNNING.rawValue)
        #expect(DeviceMigrationState.stopCopy.rawValue == VFIO_DEVICE_STATE_STOP_COPY.rawValue)
        #expect(DeviceMigrationState.resuming.rawValue == VFIO_DEVICE_STATE_RESUMING.rawValue)
        #expect(DeviceMigrationState.runningP2P.rawValue == VFIO_DEVICE_STATE_RUNNING_P2P.rawValue)
        #expect(DeviceMigrationState.preCopy.rawValue == UInt32(RDMIG_VFIO_DEVICE_STATE_PRE_COPY))
        #expect(DeviceMigrationState.preCopyP2P.rawValue == UInt32(RDMIG_VFIO_DEVICE_STATE_PRE_COPY_P2P))
    }

    @Test func featureNumbersAndFlagsAreTheUAPIs() {
        #expect(VFIOFeatureBuffer.get == 1 << 16)
        #expect(VFIOFeatureBuffer.set == 1 << 17)
        #expect(VFIOFeatureBuffer.probe == 1 << 18)
        #expect(VFIO_DEVICE_FEATURE_MASK == 0xFFFF)
        #expect(VFIOFeatureBuffer.featureMigration == 1)
        #expect(VFIOFeatureBuffer.featureMigDeviceState == 2)
        #expect(VFIOFeatureBuffer.featureMigDataSize == 9)
        #expect(VFIO_MIGRATION_STOP_COPY == 1)
        #expect(VFIO_MIGRATION_P2P == 2)
        #expect(VFIO_MIGRATION_PRE_COPY == 4)
    }

    @Test func structLayoutsAreTheUAPIs() {
        #expect(MemoryLayout<vfio_device_feature>.size == 8)
        #expect(MemoryLayout<vfio_device_feature>.offset(of: \.flags) == 4)
        #expect(MemoryLayout<vfio_device_feature_mig_state>.size == 8)
        #expect(MemoryLayout<vfio_device_feature_mig_state>.offset(of: \.data_fd) == 4)
        #expect(MemoryLayout<vfio_device_feature_mig_data_size>.size == 8)
        #expect(MemoryLayout<vfio_device_feature_migration>.size == 8)
        // struct vfio_precopy_info { u32 argsz; u32 flags; aligned_u64 initial_bytes; aligned_u64 dirty_bytes; }
        #expect(MemoryLayout<vfio_precopy_info>.size == 24)
        #expect(MemoryLayout<vfio_precopy_info>.offset(of: \.flags) == 4)
        #expect(MemoryLayout<vfio_precopy_info>.offset(of: \.initial_bytes) == 8)
        #expect(MemoryLayout<vfio_precopy_info>.offset(of: \.dirty_bytes) == 16)
        // The kernel accepts bind structs that end at out_devid (its minsz).
        #expect(MemoryLayout<vfio_device_bind_iommufd>.offset(of: \.out_devid) == 12)
    }

    @Test func setStateBufferIsArgszFlagsStateAndDataFD() {
        let buffer = VFIOFeatureBuffer.setMigrationState(.preCopy)
        #expect(buffer.bytes == [
            16, 0, 0, 0,  // argsz = 8 + sizeof(vfio_device_feature_mig_state)
            2, 0, 2, 0,  // SET (1 << 17) | MIG_DEVICE_STATE (2)
            6, 0, 0, 0,  // device_state = PRE_COPY
            0xFF, 0xFF, 0xFF, 0xFF,  // data_fd = -1 until the kernel fills it in
        ])
        #expect(buffer.argsz == 16)
        #expect(buffer.flags == VFIOFeatureBuffer.set | 2)
        #expect(buffer.migrationState.deviceState == 6)
        #expect(buffer.migrationState.dataFD == -1)
        #expect(VFIOFeatureBuffer.setMigrationState(.stopCopy).bytes[8] == 3)
        #expect(VFIOFeatureBuffer.setMigrationState(.resuming).bytes[8] == 4)
    }

    @Test func getBuffersAskForTheRightFeatureWithRoomForTheAnswer() {
        let state = VFIOFeatureBuffer.getMigrationState()
        #expect(Array(state.bytes[0..<8]) == [16, 0, 0, 0, 2, 0, 1, 0])
        let size = VFIOFeatureBuffer.getDataSize()
        #expect(size.bytes == [16, 0, 0, 0, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        let migration = VFIOFeatureBuffer.getMigration()
        #expect(migration.bytes == [16, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func answersAreReadFromTheBufferTheKernelFilledIn() {
        var size = VFIOFeatureBuffer.getDataSize()
        size.setData(vfio_device_feature_mig_data_size(stop_copy_length: 300 << 20))
        #expect(size.stopCopyLength == 300 << 20)
        #expect(Array(size.bytes[8..<16]) == [0, 0, 0xC0, 0x12, 0, 0, 0, 0])
        var state = VFIOFeatureBuffer.setMigrationState(.preCopy)
        state.setData(vfio_device_feature_mig_state(device_state: 6, data_fd: 42))
        #expect(state.migrationState.dataFD == 42)
        var migration = VFIOFeatureBuffer.getMigration()
        migration.setData(vfio_device_feature_migration(flags: 5))
        #expect(migration.migrationFlags == 5)
    }

    @Test func aMissingVFIODeviceFailsClearly() {
        let error = #expect(throws: DeviceStateError.self) { try DeviceStateProviders.make(spec: "vfio:/nonexistent") }
        guard case .noVFIODevice(path: "/nonexistent", cause: let cause) = error else {
            Issue.record("expected noVFIODevice, got \(String(describing: error))")
            return
        }
        #expect(cause.errno == ENOENT)
        #expect(error!.description.hasPrefix("no VFIO device at /nonexistent: open failed: "))
        let device = #expect(throws: DeviceStateError.self) {
            try VFIODeviceStateProvider(path: "/dev/vfio/devices/vfio0")
        }
        #expect(device?.description.hasPrefix("no VFIO device at /dev/vfio/devices/vfio0: ") == true)
    }

    @Test func somethingThatIsNotAVFIODeviceIsRefused() {
        let error = #expect(throws: DeviceStateError.self) { try VFIODeviceStateProvider(path: "/etc/hostname") }
        #expect(error == .notAVFIODevice(path: "/etc/hostname", reason: "not a character device"))
        // A character device that is not VFIO: the migration feature query fails.
        let null = #expect(throws: DeviceStateError.self) { try VFIODeviceStateProvider(path: "/dev/null") }
        guard case .migrationUnsupported(device: "vfio:/dev/null", reason: let reason) = null else {
            Issue.record("expected migrationUnsupported, got \(String(describing: null))")
            return
        }
        #expect(reason.contains("VFIO_DEVICE_FEATURE GET MIGRATION"))
    }

    @Test func vfioSpecsNeedAnAbsolutePath() {
        #expect(throws: DeviceStateError.invalidSpec(
            spec: "vfio:", reason: "vfio needs the device's path, e.g. vfio:/dev/vfio/devices/vfio0")) {
            try DeviceStateProviders.make(spec: "vfio:")
        }
        let relative = #expect(throws: DeviceStateError.self) { try DeviceStateProviders.make(spec: "vfio:vfio0") }
        #expect(relative?.description.contains("must be absolute") == true)
    }

    @Test func unknownProviderKindsAreRefusedNamingTheKnownOnes() {
        let error = #expect(throws: DeviceStateError.self) { try DeviceStateProviders.make(spec: "mlx9:qps=1") }
        #expect(error?.description
            == "bad VF state provider spec 'mlx9:qps=1': unknown provider kind 'mlx9': use ib-sw (e.g. ib-sw:qps=1000), "
            + "vfio (e.g. vfio:/dev/vfio/devices/vfio0)")
        #expect(throws: DeviceStateError.self) { try DeviceStateProviders.make(spec: "") }
    }
}
