/// A device's migration state as the VFIO migration uAPI v2 numbers it
/// (`enum vfio_device_mig_state`, torvalds/linux include/uapi/linux/vfio.h). The raw values
/// are the uAPI's, so a state can be handed to `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE` as is.
public enum DeviceMigrationState: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case error = 0
    case stop = 1
    case running = 2
    case stopCopy = 3
    case resuming = 4
    case runningP2P = 5
    case preCopy = 6
    case preCopyP2P = 7

    /// PRE_COPY, PRE_COPY_P2P and STOP_COPY share one data session in the uAPI (the
    /// "saving group"): moving between them keeps the data fd, leaving them closes it.
    public var isSaving: Bool {
        self == .preCopy || self == .preCopyP2P || self == .stopCopy
    }

    /// States in which the device (and the guest using it) may change its internal state.
    public var isRunning: Bool {
        self == .running || self == .runningP2P || self == .preCopy || self == .preCopyP2P
    }

    public var description: String {
        switch self {
        case .error: return "ERROR"
        case .stop: return "STOP"
        case .running: return "RUNNING"
        case .stopCopy: return "STOP_COPY"
        case .resuming: return "RESUMING"
        case .runningP2P: return "RUNNING_P2P"
        case .preCopy: return "PRE_COPY"
        case .preCopyP2P: return "PRE_COPY_P2P"
        }
    }
}
