import Crypto
import RdmigChannels

/// AUTH, the second step of the handshake after HELLO: each side proves it holds the
/// pre-shared key with HMAC-SHA256(key, label ‖ role ‖ source nonce ‖ destination nonce).
/// Both nonces are fresh, so a recorded exchange cannot be replayed, and the role byte keeps
/// one side's MAC from being reflected back as the other's. It runs over a `HandshakeChannel`:
/// nothing is registered for the peer, and no window exported, before the source's MAC has
/// been checked.
public enum PeerAuthentication {
    static let label = Array("rdmig-auth-v1".utf8)

    public static func mac(key: PreSharedKey, role: MigrationMessage.Role, sourceNonce: [UInt8], destinationNonce: [UInt8]) -> [UInt8] {
        var message = label
        message.append(role.rawValue)
        message += sourceNonce
        message += destinationNonce
        let code = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key.bytes))
        return Array(code)
    }

    /// Constant-time comparison of the peer's MAC with the expected one.
    public static func verify(_ received: [UInt8], key: PreSharedKey, role: MigrationMessage.Role, sourceNonce: [UInt8], destinationNonce: [UInt8]) -> Bool {
        let expected = mac(key: key, role: role, sourceNonce: sourceNonce, destinationNonce: destinationNonce)
        guard received.count == expected.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<expected.count { difference |= received[index] ^ expected[index] }
        return difference == 0
    }

    public static func freshNonce() -> [UInt8] {
        SymmetricKey(size: .bits256).withUnsafeBytes { [UInt8]($0) }
    }
}
