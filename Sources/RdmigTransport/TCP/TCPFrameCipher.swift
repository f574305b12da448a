import Crypto
import Foundation

/// AES-256-GCM for the WRITE and SEND frames of one direction of a `tcp` connection, once
/// both sides turned encryption on (`TransportConnection.startEncryption`): the payload is
/// encrypted, the 32-byte frame header (kind, flags, rkey, address, length, immediate,
/// sequence) is authenticated with it, and a 16-byte tag follows the ciphertext on the wire.
///
/// The nonce is the frame's WR sequence number (little-endian, after four zero bytes): it is
/// unique per direction for the life of a connection, and each direction has its own key
/// from the handshake, so no (key, nonce) pair ever repeats.
final class TCPFrameCipher: @unchecked Sendable {
    static let tagSize = 16
    /// Immutable after init; SymmetricKey itself is not marked Sendable.
    private let key: SymmetricKey

    init(key bytes: [UInt8]) {
        precondition(bytes.count == 32, "AES-256 needs a 32-byte key")
        key = SymmetricKey(data: bytes)
    }

    private func nonce(_ sequence: UInt64) -> AES.GCM.Nonce {
        var bytes = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: sequence.littleEndian) { bytes.replaceSubrange(4..<12, with: $0) }
        return try! AES.GCM.Nonce(data: bytes)  // 12 bytes: always a valid GCM nonce
    }

    /// Encrypts `payload` into `output` (same length) and writes the tag after it; `header`
    /// is authenticated with it.
    func seal(_ payload: UnsafeRawBufferPointer, header: UnsafeRawBufferPointer, sequence: UInt64,
              into output: UnsafeMutableRawBufferPointer) throws {
        precondition(output.count >= payload.count + Self.tagSize, "cipher output too small")
        let box = try AES.GCM.seal(payload, using: key, nonce: nonce(sequence), authenticating: header)
        box.ciphertext.withUnsafeBytes { output.baseAddress!.copyMemory(from: $0.baseAddress ?? UnsafeRawPointer(output.baseAddress!), byteCount: $0.count) }
        box.tag.withUnsafeBytes { (output.baseAddress! + payload.count).copyMemory(from: $0.baseAddress!, byteCount: Self.tagSize) }
    }

    /// Checks `tag` over `ciphertext` and `header` and decrypts `ciphertext` in place; false
    /// when the frame was not sealed with this key for this sequence number (changed,
    /// replayed, reordered or forged), and then `ciphertext` is left as it was.
    func open(_ ciphertext: UnsafeMutableRawBufferPointer, tag: UnsafeRawBufferPointer, header: UnsafeRawBufferPointer,
              sequence: UInt64) -> Bool {
        guard let box = try? AES.GCM.SealedBox(nonce: nonce(sequence), ciphertext: UnsafeRawBufferPointer(ciphertext), tag: tag),
              let plaintext = try? AES.GCM.open(box, using: key, authenticating: header) else { return false }
        plaintext.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress, bytes.count > 0 { ciphertext.baseAddress!.copyMemory(from: base, byteCount: bytes.count) }
        }
        return true
    }
}
