#if canImport(Glibc)
import Glibc
#endif
import CRdmigShims
import RdmigSystem
import Synchronization

/// `vfio`: a real VF's state through the VFIO migration uAPI v2, on a VFIO device fd.
/// The stream is the device's own (for mlx5: records `{le64 size; le32 flags; le32 tag}` +
/// data, see FACTS.md); rdmig moves it without interpreting it, so there is no digest.
///
/// `vfio:PATH` opens a device cdev (`/dev/vfio/devices/vfioN`, Linux 6.6+) and binds it to a
/// fresh iommufd, which the cdev requires before any other ioctl. A device fd a VMM already
/// holds can be adopted with `init(adoptingDeviceFD:name:)`.
public final class VFIODeviceStateProvider: DeviceStateProvider {
    public let name: String
    public let kind = "vfio"
    /// The stream is the device's own; its version is the driver's business.
    public let streamVersion: UInt32 = 1
    /// VFIO_DEVICE_FEATURE_MIGRATION flags: STOP_COPY 1, P2P 2, PRE_COPY 4.
    public let migrationFlags: UInt64

    public var supportsPreCopy: Bool { migrationFlags & UInt64(VFIO_MIGRATION_PRE_COPY) != 0 }
    public var supportsP2P: Bool { migrationFlags & UInt64(VFIO_MIGRATION_P2P) != 0 }
    /// QEMU uses switchover-ack for every VFIO device with PRE_COPY: the destination driver
    /// prepares its resources from the initial bytes before the source stops.
    public var requiresSwitchoverAck: Bool { supportsPreCopy }

    private struct Handles: Sendable {
        var deviceFD: Int32
        var iommuFD: Int32
        var dataFD: Int32 = -1
        var state: DeviceMigrationState
    }

    private let handles: Mutex<Handles>

    /// Opens the VFIO device at `path` and checks that it can migrate.
    public convenience init(path: String) throws(DeviceStateError) {
        let (deviceFD, iommuFD) = try VFIODeviceStateProvider.open(path: path)
        do {
            try self.init(deviceFD: deviceFD, iommuFD: iommuFD, name: "vfio:\(path)")
        } catch {
            close(deviceFD)
            if iommuFD >= 0 { close(iommuFD) }
            throw error
        }
    }

    /// Takes ownership of an open VFIO device fd (closed when the provider goes away); when
    /// this throws, the fd is still the caller's.
    public convenience init(adoptingDeviceFD deviceFD: Int32, name: String) throws(DeviceStateError) {
        try self.init(deviceFD: deviceFD, iommuFD: -1, name: name)
    }

    private init(deviceFD: Int32, iommuFD: Int32, name: String) throws(DeviceStateError) {
        self.name = name
        var migration = VFIOFeatureBuffer.getMigration()
        do {
            try VFIODeviceStateProvider.ioctl(
                deviceFD, VFIORequest.deviceFeature, &migration, "VFIO_DEVICE_FEATURE GET MIGRATION", name)
        } catch {
            throw .migrationUnsupported(
                device: name,
                reason: "\(error): the VF's driver offers no VFIO migration; bind it to a vfio-pci variant "
                    + "driver with migration support (e.g. mlx5_vfio_pci)")
        }
        migrationFlags = migration.migrationFlags
        guard migrationFlags & UInt64(VFIO_MIGRATION_STOP_COPY) != 0 else {
            throw .migrationUnsupported(
                device: name, reason: "the driver reports migration flags \(hex(migrationFlags)) without STOP_COPY")
        }
        var current = VFIOFeatureBuffer.getMigrationState()
        try VFIODeviceStateProvider.ioctl(
            deviceFD, VFIORequest.deviceFeature, &current, "VFIO_DEVICE_FEATURE GET MIG_DEVICE_STATE", name)
        let state = DeviceMigrationState(rawValue: current.migrationState.deviceState) ?? .error
        handles = Mutex(Handles(deviceFD: deviceFD, iommuFD: iommuFD, state: state))
    }

    deinit {
        handles.withLock { handles in
            if handles.dataFD >= 0 { close(handles.dataFD) }
            close(handles.deviceFD)
            if handles.iommuFD >= 0 { close(handles.iommuFD) }
        }
    }

    /// Opens a device cdev and binds it to a new iommufd. A group (`/dev/vfio/N`) or the
    /// container (`/dev/vfio/vfio`) is refused: they are not device fds.
    static func open(path: String) throws(DeviceStateError) -> (deviceFD: Int32, iommuFD: Int32) {
        let deviceFD = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard deviceFD >= 0 else {
            throw .noVFIODevice(path: path, cause: SystemCallError(call: "open", errno: SystemCall.currentErrno()))
        }
        var status = stat()
        guard fstat(deviceFD, &status) == 0, status.st_mode & S_IFMT == S_IFCHR else {
            close(deviceFD)
            throw .notAVFIODevice(path: path, reason: "not a character device")
        }
        let name = path.split(separator: "/").last.map(String.init) ?? path
        if path.hasPrefix("/dev/vfio/"), !path.hasPrefix("/dev/vfio/devices/") {
            close(deviceFD)
            let what = name == "vfio" ? "the VFIO container" : "a VFIO group"
            throw .notAVFIODevice(
                path: path, reason: "it is \(what), not a device; pass the VF's device cdev /dev/vfio/devices/vfioN")
        }
        guard path.hasPrefix("/dev/vfio/devices/") else { return (deviceFD, -1) }
        let iommuFD = Glibc.open("/dev/iommu", O_RDWR | O_CLOEXEC)
        guard iommuFD >= 0 else {
            let error = SystemCallError(call: "open", errno: SystemCall.currentErrno(), context: "/dev/iommu")
            close(deviceFD)
            throw .notAVFIODevice(path: path, reason: "a VFIO device cdev needs iommufd (CONFIG_IOMMUFD): \(error)")
        }
        var bind = vfio_device_bind_iommufd()
        bind.argsz = UInt32(MemoryLayout<vfio_device_bind_iommufd>.size)
        bind.iommufd = iommuFD
        let result = rdmig_ioctl_ptr(deviceFD, VFIORequest.deviceBindIOMMUFD, &bind)
        guard result == 0 else {
            let error = SystemCallError(call: "ioctl(VFIO_DEVICE_BIND_IOMMUFD)", errno: SystemCall.currentErrno(), context: path)
            close(deviceFD)
            close(iommuFD)
            throw .system(error)
        }
        return (deviceFD, iommuFD)
    }

    private static func ioctl(
        _ fd: Int32, _ request: UInt, _ buffer: inout VFIOFeatureBuffer, _ what: String, _ device: String
    ) throws(DeviceStateError) {
        do {
            try SystemCall.check("ioctl(\(what))", context: device) {
                buffer.withUnsafeMutableRawPointer { rdmig_ioctl_ptr(fd, request, $0) }
            }
        } catch {
            throw .system(error)
        }
    }

    public var state: DeviceMigrationState { handles.withLock { $0.state } }

    public func transition(to target: DeviceMigrationState) throws(DeviceStateError) {
        if target == .preCopy || target == .preCopyP2P, !supportsPreCopy {
            throw .migrationUnsupported(
                device: name, reason: "the device has no PRE_COPY (VFIO_MIGRATION_PRE_COPY): its whole state moves in STOP_COPY")
        }
        if target == .runningP2P || target == .preCopyP2P, !supportsP2P {
            throw .migrationUnsupported(device: name, reason: "the device has no P2P states (VFIO_MIGRATION_P2P)")
        }
        guard target != .error else {
            throw .invalidTransition(device: name, from: state, to: target, reason: "ERROR cannot be requested")
        }
        try handles.withLock { handles throws(DeviceStateError) in
            let from = handles.state
            var buffer = VFIOFeatureBuffer.setMigrationState(target)
            do throws(DeviceStateError) {
                try VFIODeviceStateProvider.ioctl(
                    handles.deviceFD, VFIORequest.deviceFeature, &buffer, "VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE \(from) -> \(target)", name)
            } catch {
                // A failed arc may leave the device anywhere on its path, or in ERROR: ask it.
                var current = VFIOFeatureBuffer.getMigrationState()
                let query = current.withUnsafeMutableRawPointer {
                    rdmig_ioctl_ptr(handles.deviceFD, VFIORequest.deviceFeature, $0)
                }
                handles.state = query == 0 ? DeviceMigrationState(rawValue: current.migrationState.deviceState) ?? .error : .error
                throw error
            }
            let dataFD = buffer.migrationState.dataFD
            if dataFD >= 0 {
                if handles.dataFD >= 0 { close(handles.dataFD) }
                handles.dataFD = dataFD
            } else if !target.isSaving, target != .resuming, handles.dataFD >= 0 {
                // Leaving the saving group or RESUMING ends the session; the fd is ours to close.
                close(handles.dataFD)
                handles.dataFD = -1
            }
            handles.state = target
        }
    }

    public func precopyInfo() throws(DeviceStateError) -> PrecopyInfo {
        try handles.withLock { handles throws(DeviceStateError) in
            guard handles.state == .preCopy || handles.state == .preCopyP2P, handles.dataFD >= 0 else {
                throw .wrongState(device: name, operation: "precopy info", state: handles.state, expected: "PRE_COPY")
            }
            var info = vfio_precopy_info()
            info.argsz = UInt32(MemoryLayout<vfio_precopy_info>.size)
            let fd = handles.dataFD
            do throws(SystemCallError) {
                try SystemCall.check("ioctl(VFIO_MIG_GET_PRECOPY_INFO)", context: name) {
                    rdmig_ioctl_ptr(fd, VFIORequest.migGetPrecopyInfo, &info)
                }
            } catch {
                throw .system(error)
            }
            return PrecopyInfo(initialBytes: info.initial_bytes, dirtyBytes: info.dirty_bytes)
        }
    }

    public func stopCopySize() throws(DeviceStateError) -> UInt64 {
        try handles.withLock { handles throws(DeviceStateError) in
            var buffer = VFIOFeatureBuffer.getDataSize()
            try VFIODeviceStateProvider.ioctl(
                handles.deviceFD, VFIORequest.deviceFeature, &buffer, "VFIO_DEVICE_FEATURE GET MIG_DATA_SIZE", name)
            return buffer.stopCopyLength
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(DeviceStateError) -> DeviceStateRead {
        try handles.withLock { handles throws(DeviceStateError) in
            guard handles.state.isSaving, handles.dataFD >= 0 else {
                throw .wrongState(device: name, operation: "read", state: handles.state, expected: "PRE_COPY or STOP_COPY")
            }
            let fd = handles.dataFD
            while true {
                let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
                if count > 0 { return .bytes(count) }
                if count == 0 {
                    // End of stream is permanent only in STOP_COPY; in PRE_COPY the uAPI
                    // reports a temporary end with ENOMSG, and a 0 means the same.
                    return handles.state == .stopCopy ? .endOfStream : .nothingPending
                }
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                if error == ENOMSG && handles.state != .stopCopy { return .nothingPending }
                throw .system(SystemCallError(call: "read", errno: error, context: "migration data fd of \(name)"))
            }
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(DeviceStateError) {
        try handles.withLock { handles throws(DeviceStateError) in
            guard handles.state == .resuming, handles.dataFD >= 0 else {
                throw .wrongState(device: name, operation: "write", state: handles.state, expected: "RESUMING")
            }
            var offset = 0
            while offset < bytes.count {
                let fd = handles.dataFD
                let written: Int
                do throws(SystemCallError) {
                    written = try SystemCall.check("write", context: "migration data fd of \(name)") {
                        Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                    }
                } catch {
                    throw .system(error)
                }
                offset += written
            }
        }
    }

    public func reset() throws(DeviceStateError) {
        try handles.withLock { handles throws(DeviceStateError) in
            let fd = handles.deviceFD
            do throws(SystemCallError) {
                try SystemCall.check("ioctl(VFIO_DEVICE_RESET)", context: name) {
                    rdmig_ioctl_none(fd, VFIORequest.deviceReset)
                }
            } catch {
                throw .system(error)
            }
            if handles.dataFD >= 0 {
                close(handles.dataFD)
                handles.dataFD = -1
            }
            handles.state = .running
        }
    }

    public func stateDigest() throws(DeviceStateError) -> DeviceStateDigest? { nil }
}
