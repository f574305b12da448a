import RdmigSystem
import RdmigTransport

/// Everything a channel can report, worded for the person who reads the log.
public enum ChannelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The connection underneath failed (peer gone, access refused, ...).
    case transport(TransportError)
    /// A blocking channel operation did not finish in time.
    case timedOut(operation: String, after: Duration)
    /// The peer runs another protocol version.
    case versionMismatch(peer: UInt16, local: UInt16)
    /// The bytes received are not a well-formed control frame.
    case malformedFrame(detail: String)
    /// The frame is well-formed but its message is not (names the message and field).
    case malformedMessage(WireError)
    /// A message does not fit the control channel's frame size.
    case messageTooLarge(message: String, bytes: Int, limit: Int)
    /// The peer broke a rule of the channel protocol (sequence, length, slot).
    case protocolViolation(detail: String)
    /// The peer closed its end of this channel.
    case peerClosed(channel: String)
    /// This end was closed; nothing more can be sent or received on it.
    case closed(channel: String)
    /// Queue slots or receive buffers of the connection are all reserved by other channels.
    case resourcesExhausted(detail: String)
    /// A caller passed something the channel cannot use (window too small, bad page run).
    case invalidArgument(detail: String)
    /// A system call made by a channel failed (reading or writing a relayed descriptor).
    case system(SystemCallError)
    /// A control frame failed its keyed MAC: changed on the path, replayed, reordered, or
    /// sent by someone without this migration's session key.
    case authenticationFailed(detail: String)

    public var description: String {
        switch self {
        case .transport(let error):
            return error.description
        case .timedOut(let operation, let after):
            return "\(operation) timed out after \(formatFixed(after.seconds, decimals: 1)) s"
        case .versionMismatch(let peer, let local):
            return "peer speaks rdmig protocol v\(peer), this is v\(local): run the same rdmig release on both hosts"
        case .malformedFrame(let detail):
            return "malformed control frame: \(detail)"
        case .malformedMessage(let error):
            return error.description
        case .messageTooLarge(let message, let bytes, let limit):
            return "\(message) message needs \(bytes) bytes but a control frame holds \(limit): split it or raise the control frame size"
        case .protocolViolation(let detail):
            return "channel protocol violation: \(detail)"
        case .peerClosed(let channel):
            return "the peer closed \(channel)"
        case .closed(let channel):
            return "\(channel) is closed"
        case .resourcesExhausted(let detail):
            return "connection resources exhausted: \(detail)"
        case .invalidArgument(let detail):
            return "invalid argument: \(detail)"
        case .system(let error):
            return error.description
        case .authenticationFailed(let detail):
            return "control frame authentication failed: \(detail)"
        }
    }
}
