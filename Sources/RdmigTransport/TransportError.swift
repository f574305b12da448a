import RdmigSystem

/// Everything a transport operation can report, each case worded for the person who reads it.
public enum TransportError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Nobody listens at the address (TCP RST / RDMA CM REJECTED by the stack).
    case connectionRefused(TransportEndpoint)
    /// Address or route resolution failed, or the host is unreachable.
    case unreachable(TransportEndpoint, reason: String)
    /// The peer rejected the connection and said why (version mismatch, busy, ...).
    case rejectedByPeer(TransportEndpoint, reason: String)
    /// A connect, accept, or wait did not finish in time.
    case timedOut(operation: String, after: Duration)
    /// The peer closed or vanished; in-flight work completes with `.flushed`.
    case peerDisconnected(TransportEndpoint, detail: String)
    /// This side wrote outside an exported window or with an unknown key: the peer refused it
    /// and the connection is torn down (RDMA's remote access error).
    case remoteAccessRefused(detail: String)
    /// The peer wrote outside a window this side exported, or with a key this side never
    /// exported; nothing outside the window was touched and the connection is torn down.
    case invalidRemoteAccess(detail: String)
    /// The peer sent bytes that are not this transport's framing or protocol version.
    case protocolViolation(detail: String)
    /// A work request could not be posted: the queue is full (wait for completions first).
    case queueFull(queue: String, depth: Int)
    /// A work request names memory that is not registered on this connection, or a bad length.
    case invalidWorkRequest(detail: String)
    /// The connection is already closed or in error; no more work can be posted.
    case connectionClosed(detail: String)
    /// Registration failed (memlock limits, device limits), with what to do about it.
    case registrationFailed(detail: String)
    /// No device for this backend (for verbs: no RDMA device on this machine).
    case deviceUnavailable(reason: String)
    /// A system or library call failed.
    case system(SystemCallError)
    /// A listener turned away one connecting peer (bad preamble, silence, too many at once);
    /// the listener itself carries on.
    case peerRefused(TransportEndpoint, reason: String)

    public var description: String {
        switch self {
        case .connectionRefused(let endpoint):
            return "connection to \(endpoint) refused: is `rdmig dest` listening there?"
        case .unreachable(let endpoint, let reason):
            return "cannot reach \(endpoint): \(reason)"
        case .rejectedByPeer(let endpoint, let reason):
            return "\(endpoint) rejected the connection: \(reason)"
        case .timedOut(let operation, let after):
            return "\(operation) timed out after \(formatFixed(after.seconds, decimals: 1)) s"
        case .peerDisconnected(let endpoint, let detail):
            return "peer \(endpoint) disconnected: \(detail)"
        case .remoteAccessRefused(let detail):
            return "remote access refused by the peer: \(detail)"
        case .invalidRemoteAccess(let detail):
            return "peer attempted an invalid remote access: \(detail)"
        case .protocolViolation(let detail):
            return "protocol violation: \(detail)"
        case .queueFull(let queue, let depth):
            return "\(queue) queue full (depth \(depth)): wait for completions before posting more"
        case .invalidWorkRequest(let detail):
            return "invalid work request: \(detail)"
        case .connectionClosed(let detail):
            return "connection closed: \(detail)"
        case .registrationFailed(let detail):
            return "memory registration failed: \(detail)"
        case .deviceUnavailable(let reason):
            return "no RDMA device: \(reason)"
        case .peerRefused(let endpoint, let reason):
            return "refused the connection from \(endpoint): \(reason)"
        case .system(let error):
            return error.description
        }
    }
}
