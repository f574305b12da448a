import Crypto
import Foundation
import RdmigTransport

/// Keys one authenticated migration uses, derived by both services from the pre-shared key and
/// the two HELLO nonces (HKDF-SHA256, RFC 5869): nobody without the pre-shared key can compute
/// them, and each migration gets fresh ones because each HELLO carries a fresh nonce.
///
/// - `sourceToDestination` / `destinationToSource`: HMAC keys of the control frames each side
///   sends (one per direction, so a frame cannot be reflected back to its sender);
/// - `digestSeed`: the seed of the page and VF-state digests, so that someone on the path who
///   rewrites pages cannot also predict the digest the destination will compute.
public struct SessionKeys: Sendable {
    public let sourceToDestination: [UInt8]
    public let destinationToSource: [UInt8]
    public let digestSeed: UInt64
    /// Names this migration in a RESOLVE after the connection was lost: unguessable to anyone
    /// without the key, the same on both sides.
    public let migrationID: [UInt8]
    /// AES-256-GCM keys of the tcp backend's frames, one per direction (when encryption is on).
    public let transportSourceToDestination: [UInt8]
    public let transportDestinationToSource: [UInt8]

    static let info = Array("rdmig-session-v2".utf8)

    public init(preSharedKey: [UInt8], sourceNonce: [UInt8], destinationNonce: [UInt8]) {
        let material = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: preSharedKey), salt: sourceNonce + destinationNonce,
            info: Self.info, outputByteCount: 152)
        let bytes = material.withUnsafeBytes { [UInt8]($0) }
        sourceToDestination = Array(bytes[0..<32])
        destinationToSource = Array(bytes[32..<64])
        var seed: UInt64 = 0
        for index in 0..<8 { seed |= UInt64(bytes[64 + index]) << (8 * UInt64(index)) }
        digestSeed = seed
        migrationID = Array(bytes[72..<88])
        transportSourceToDestination = Array(bytes[88..<120])
        transportDestinationToSource = Array(bytes[120..<152])
    }

    /// The transport encryption keys of `role`'s side.
    public func transportKeys(sending role: MigrationMessage.Role) -> TransportEncryptionKeys {
        role == .source
            ? TransportEncryptionKeys(sendKey: transportSourceToDestination, receiveKey: transportDestinationToSource)
            : TransportEncryptionKeys(sendKey: transportDestinationToSource, receiveKey: transportSourceToDestination)
    }

    /// The authenticator of the control frames `role` sends and receives.
    public func frameAuthenticator(sending role: MigrationMessage.Role) -> ControlFrameAuthenticator {
        role == .source
            ? ControlFrameAuthenticator(sendKey: sourceToDestination, receiveKey: destinationToSource)
            : ControlFrameAuthenticator(sendKey: destinationToSource, receiveKey: sourceToDestination)
    }
}

/// The keyed MAC on every control frame after authentication: HMAC-SHA256 over the frame's
/// sequence number in its direction, its header and its payload, truncated to 16 bytes and
/// sent after the payload. The sequence number is not sent: both ends count, so a frame that
/// is replayed, dropped, reordered or rewritten by someone on the path fails the check.
/// (CRC-32C in the header only catches accidents.)
public struct ControlFrameAuthenticator: Sendable {
    public static let tagSize = 16

    /// Raw key bytes: SymmetricKey is not Sendable, and control frames are few enough that
    /// making one per frame costs nothing measurable.
    let sendKey: [UInt8]
    let receiveKey: [UInt8]

    public init(sendKey: [UInt8], receiveKey: [UInt8]) {
        self.sendKey = sendKey
        self.receiveKey = receiveKey
    }

    func tag(_ frame: UnsafeRawBufferPointer, sequence: UInt64, key: [UInt8]) -> HMAC<SHA256>.MAC {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: key))
        withUnsafeBytes(of: sequence.littleEndian) { mac.update(data: $0) }
        mac.update(data: frame)
        return mac.finalize()
    }

    /// Writes the tag of `frame` (header and payload) for send `sequence` into `tagArea`.
    func seal(_ frame: UnsafeRawBufferPointer, sequence: UInt64, into tagArea: UnsafeMutableRawBufferPointer) {
        let code = tag(frame, sequence: sequence, key: sendKey)
        code.withUnsafeBytes { bytes in
            tagArea.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<Self.tagSize]))
        }
    }

    /// Whether `received` is the tag of `frame` for receive `sequence` (constant time).
    func check(_ frame: UnsafeRawBufferPointer, sequence: UInt64, received: UnsafeRawBufferPointer) -> Bool {
        guard received.count == Self.tagSize else { return false }
        let code = tag(frame, sequence: sequence, key: receiveKey)
        return code.withUnsafeBytes { bytes in
            var difference: UInt8 = 0
            for index in 0..<Self.tagSize { difference |= bytes[index] ^ received[index] }
            return difference == 0
        }
    }
}
