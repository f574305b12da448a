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
    /// The peer said it gave up (its ABORT or ERROR), as opposed to going silent or away:
    /// the hand-over logic acts on the difference.
    public var peerGaveUp: Bool

    public init(_ phase: Phase, _ detail: String, peerGaveUp: Bool = false) {
        self.phase = phase
        self.detail = detail
        self.peerGaveUp = peerGaveUp
    }

    public var description: String { "\(phase.rawValue): \(detail)" }

    /// A channel failure, with the peer's vanishing said plainly.
    package static func channel(_ error: ChannelError, _ phase: Phase, during: String) -> MigrationError {
        MigrationError(phase, "\(during): \(error)")
    }
}
