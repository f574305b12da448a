import RdmigSystem

/// Why a device-state provider refused or failed: what failed, with which device, and
/// what to do about it.
public enum DeviceStateError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A system call on the device failed (the call, errno and context are in the error).
    case system(SystemCallError)
    /// `vfio:PATH` names nothing that can be opened.
    case noVFIODevice(path: String, cause: SystemCallError)
    /// `vfio:PATH` opened, but it is not a VFIO device this provider can drive.
    case notAVFIODevice(path: String, reason: String)
    /// The device exists but cannot migrate the way the caller asked.
    case migrationUnsupported(device: String, reason: String)
    /// The uAPI's state machine has no such arc (or the provider does not implement it).
    case invalidTransition(device: String, from: DeviceMigrationState, to: DeviceMigrationState, reason: String)
    /// An operation that only makes sense in some states was called in another.
    case wrongState(device: String, operation: String, state: DeviceMigrationState, expected: String)
    /// A provider spec string (`ib-sw:qps=1000`, `vfio:/dev/...`) could not be understood.
    case invalidSpec(spec: String, reason: String)
    /// The destination was given bytes that are not a valid state stream.
    case corruptStream(device: String, offset: UInt64, reason: String)
    /// Leaving RESUMING found the loaded state incomplete or not equal to what the source sent.
    case incompleteState(device: String, reason: String)
    /// Source and destination devices are not the same shape.
    case incompatibleDevice(device: String, reason: String)

    public var description: String {
        switch self {
        case .system(let error):
            return error.description
        case .noVFIODevice(let path, let cause):
            return "no VFIO device at \(path): \(cause.call) failed: \(cause.reason) (\(cause.errnoName)); "
                + "pass the VF's VFIO device cdev (/dev/vfio/devices/vfioN, Linux 6.6+ with the VF bound to "
                + "a vfio-pci variant driver with migration support, e.g. mlx5_vfio_pci)"
        case .notAVFIODevice(let path, let reason):
            return "\(path) is not a VFIO device rdmig can migrate: \(reason)"
        case .migrationUnsupported(let device, let reason):
            return "\(device): migration not supported: \(reason)"
        case .invalidTransition(let device, let from, let to, let reason):
            return "\(device): cannot go from \(from) to \(to): \(reason)"
        case .wrongState(let device, let operation, let state, let expected):
            return "\(device): \(operation) needs the device in \(expected), but it is in \(state)"
        case .invalidSpec(let spec, let reason):
            return "bad VF state provider spec '\(spec)': \(reason)"
        case .corruptStream(let device, let offset, let reason):
            return "\(device): corrupt state stream at byte \(offset): \(reason)"
        case .incompleteState(let device, let reason):
            return "\(device): loaded state rejected: \(reason)"
        case .incompatibleDevice(let device, let reason):
            return "\(device): source and destination devices differ: \(reason)"
        }
    }
}
