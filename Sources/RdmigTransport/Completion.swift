/// A finished work request, as a verbs work completion reports it.
public struct Completion: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case write
        case send
        case receive
        case receivedWriteWithImmediate
    }

    /// Mirrors the ibv_wc_status values the rest of rdmig acts on.
    public enum Status: UInt8, Sendable, CustomStringConvertible {
        case success
        /// The request was not executed because the connection went into error or closed.
        case flushed
        /// The peer refused the access (bad key, outside the window): IBV_WC_REM_ACCESS_ERR.
        case remoteAccessError
        /// An incoming SEND did not fit the posted receive: IBV_WC_LOC_LEN_ERR.
        case localLengthError
        /// The peer stopped answering: IBV_WC_RETRY_EXC_ERR.
        case transportRetryExceeded
        /// Anything else the device reports.
        case otherError

        public var description: String {
            switch self {
            case .success: return "success"
            case .flushed: return "flushed"
            case .remoteAccessError: return "remote access error"
            case .localLengthError: return "local length error"
            case .transportRetryExceeded: return "transport retry exceeded"
            case .otherError: return "error"
            }
        }
    }

    public var id: UInt64
    public var kind: Kind
    public var status: Status
    /// Bytes received (for receives and writes with immediate) or sent.
    public var byteCount: Int
    /// The immediate of a WRITE_WITH_IMM, on the receiving side.
    public var immediate: UInt32?

    public init(id: UInt64, kind: Kind, status: Status, byteCount: Int = 0, immediate: UInt32? = nil) {
        self.id = id
        self.kind = kind
        self.status = status
        self.byteCount = byteCount
        self.immediate = immediate
    }

    /// A zeroed value for pre-allocating completion arrays.
    public static let empty = Completion(id: 0, kind: .write, status: .success)
}
