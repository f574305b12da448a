import RdmigChannels
import RdmigDeviceState
import RdmigTransport

/// Why a migration did not complete, worded for the operator, with where the guest runs now.
public struct MigrationError: Error, CustomStringConvertible, Sendable {
    public enum Phase: String, Sendable {
        case setup, authentication, layout, precopy, switchover, commit
    }

    public var phase: Phase
    public var detail: String

    public init(_ phase: Phase, _ detail: String) {
        self.phase = phase
        self.detail = detail
    }

    public var description: String { "\(phase.rawValue): \(detail)" }

    /// A channel failure, with the peer's vanishing said plainly.
    package static func channel(_ error: ChannelError, _ phase: Phase, during: String) -> MigrationError {
        MigrationError(phase, "\(during): \(error)")
    }
}
