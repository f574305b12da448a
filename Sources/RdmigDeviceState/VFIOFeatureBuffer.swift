import CRdmigShims

/// The argument of `VFIO_DEVICE_FEATURE`: `struct vfio_device_feature { u32 argsz; u32 flags;
/// u8 data[]; }` followed by the feature's own struct, as one buffer. `flags` holds the
/// feature index (low 16 bits) and GET / SET / PROBE. Layouts come from <linux/vfio.h>
/// through CRdmigShims; the uAPI is native-endian.
public struct VFIOFeatureBuffer: Equatable, Sendable {
    public private(set) var bytes: [UInt8]

    static let headerSize = MemoryLayout<vfio_device_feature>.size

    public static let get = UInt32(VFIO_DEVICE_FEATURE_GET)
    public static let set = UInt32(VFIO_DEVICE_FEATURE_SET)
    public static let probe = UInt32(VFIO_DEVICE_FEATURE_PROBE)
    public static let featureMigration = UInt32(VFIO_DEVICE_FEATURE_MIGRATION)
    public static let featureMigDeviceState = UInt32(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE)
    public static let featureMigDataSize = UInt32(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE)

    /// A buffer for `feature` with `operation` (GET, SET, PROBE or a PROBE combination) and
    /// room for `Data`, zeroed.
    init<Data>(feature: UInt32, operation: UInt32, data: Data.Type) {
        let size = VFIOFeatureBuffer.headerSize + MemoryLayout<Data>.size
        bytes = [UInt8](repeating: 0, count: size)
        var header = vfio_device_feature()
        header.argsz = UInt32(size)
        header.flags = operation | feature
        withUnsafeBytes(of: &header) { raw in
            for index in 0..<VFIOFeatureBuffer.headerSize { bytes[index] = raw[index] }
        }
    }

    public var argsz: UInt32 { load(UInt32.self, at: 0) }
    public var flags: UInt32 { load(UInt32.self, at: 4) }

    func load<T>(_ type: T.Type, at offset: Int) -> T {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    /// The feature's data struct (after the ioctl filled it in, for GET).
    func data<Data>(as type: Data.Type) -> Data { load(Data.self, at: VFIOFeatureBuffer.headerSize) }

    mutating func setData<Data>(_ value: Data) {
        var value = value
        withUnsafeBytes(of: &value) { raw in
            for index in 0..<raw.count { bytes[VFIOFeatureBuffer.headerSize + index] = raw[index] }
        }
    }

    mutating func withUnsafeMutableRawPointer<R>(_ body: (UnsafeMutableRawPointer) -> R) -> R {
        bytes.withUnsafeMutableBytes { body($0.baseAddress!) }
    }

    // MARK: The features rdmig uses

    /// SET MIG_DEVICE_STATE: `{u32 device_state; s32 data_fd}`; the kernel returns the new
    /// session's data fd in `data_fd` (-1 when the arc starts no session).
    public static func setMigrationState(_ state: DeviceMigrationState) -> VFIOFeatureBuffer {
        var buffer = VFIOFeatureBuffer(
            feature: featureMigDeviceState, operation: set, data: vfio_device_feature_mig_state.self)
        buffer.setData(vfio_device_feature_mig_state(device_state: state.rawValue, data_fd: -1))
        return buffer
    }

    /// GET MIG_DEVICE_STATE: the current state.
    public static func getMigrationState() -> VFIOFeatureBuffer {
        var buffer = VFIOFeatureBuffer(
            feature: featureMigDeviceState, operation: get, data: vfio_device_feature_mig_state.self)
        buffer.setData(vfio_device_feature_mig_state(device_state: 0, data_fd: -1))
        return buffer
    }

    /// GET MIGRATION: `{u64 flags}` = STOP_COPY 1 | P2P 2 | PRE_COPY 4.
    public static func getMigration() -> VFIOFeatureBuffer {
        VFIOFeatureBuffer(feature: featureMigration, operation: get, data: vfio_device_feature_migration.self)
    }

    /// GET MIG_DATA_SIZE: `{u64 stop_copy_length}`, the device's estimate of what STOP_COPY
    /// will still produce.
    public static func getDataSize() -> VFIOFeatureBuffer {
        VFIOFeatureBuffer(feature: featureMigDataSize, operation: get, data: vfio_device_feature_mig_data_size.self)
    }

    /// `device_state` and `data_fd` of a MIG_DEVICE_STATE buffer.
    public var migrationState: (deviceState: UInt32, dataFD: Int32) {
        let value = data(as: vfio_device_feature_mig_state.self)
        return (value.device_state, value.data_fd)
    }

    /// The flags of a GET MIGRATION buffer.
    public var migrationFlags: UInt64 { data(as: vfio_device_feature_migration.self).flags }

    /// The length of a GET MIG_DATA_SIZE buffer.
    public var stopCopyLength: UInt64 { data(as: vfio_device_feature_mig_data_size.self).stop_copy_length }
}
