import RdmigTransport

/// Whether the transport's frames are encrypted (`--encrypt`, `[transport] encrypt`). Either
/// side asking turns it on for both (HELLO's `encryption` feature).
public enum EncryptionPolicy: String, Sendable, CaseIterable, CustomStringConvertible {
    /// On unless the peer is on this host (loopback).
    case auto
    /// Always; a backend without encryption (verbs) is an error.
    case on
    /// Not asked for by this side (the peer may still ask).
    case off

    /// Whether this side asks for encryption with `peer`.
    public func wants(peer: TransportEndpoint) -> Bool {
        switch self {
        case .on: return true
        case .off: return false
        case .auto: return !peer.isLoopback
        }
    }

    public var description: String { rawValue }
}
