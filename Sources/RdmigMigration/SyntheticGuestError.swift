import RdmigSystem

/// Why a synthetic guest could not be built or started.
public enum SyntheticGuestError: Error, CustomStringConvertible, Equatable, Sendable {
    case configuration(MigrationConfigurationError)
    case memory(GuestMemoryError)
    case thread(SystemCallError)
    case regionMismatch(String)

    public var description: String {
        switch self {
        case .configuration(let error): return "synthetic guest configuration: \(error)"
        case .memory(let error): return "synthetic guest memory: \(error)"
        case .thread(let error): return "starting the synthetic guest's writers failed: \(error)"
        case .regionMismatch(let why): return "synthetic guest: \(why)"
        }
    }
}
