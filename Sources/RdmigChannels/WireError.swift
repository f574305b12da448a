/// A control message that cannot be encoded or decoded, naming the message and the field.
public enum WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The payload ended before `field` could be read.
    case truncated(message: String, field: String, needed: Int, available: Int)
    /// `field` holds a value this side does not accept (an unknown enum code, a count that
    /// cannot fit in the payload, text that is not UTF-8).
    case invalidValue(message: String, field: String, detail: String)
    /// Bytes were left over after the last field: the peer's encoding differs from ours.
    case trailingBytes(message: String, count: Int)
    /// Encoding `field` would run past the end of the frame.
    case overflow(message: String, field: String, needed: Int, capacity: Int)
    /// The frame's type code names no message of this protocol.
    case unknownMessageType(UInt16)

    public var description: String {
        switch self {
        case .truncated(let message, let field, let needed, let available):
            return "\(message) message is truncated at field '\(field)': needs \(needed) more bytes, \(available) left"
        case .invalidValue(let message, let field, let detail):
            return "\(message) message has an invalid '\(field)': \(detail)"
        case .trailingBytes(let message, let count):
            return "\(message) message has \(count) unexpected bytes after its last field: the peer encodes it differently"
        case .overflow(let message, let field, let needed, let capacity):
            return "\(message) message does not fit its frame at field '\(field)': needs \(needed) bytes, the frame holds \(capacity)"
        case .unknownMessageType(let code):
            return "unknown control message type \(code)"
        }
    }
}
