/// How the loopback relay's receiving half reports a stream whose sender died.
public enum LoopbackStreamRelayError: Error, CustomStringConvertible, Equatable {
    case senderFailed(bytesDelivered: UInt64)

    public var description: String {
        switch self {
        case .senderFailed(let bytes):
            return "the stream broke off after \(bytes) bytes: its sending half failed before the end of the stream"
        }
    }
}
