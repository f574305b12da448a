import CRdmigAEAD

/// AES-256-GCM for the WRITE and SEND frames of one direction of a `tcp` connection, once
/// both sides turned encryption on (`TransportConnection.startEncryption`): the payload is
/// encrypted, the 32-byte frame header (kind, flags, rkey, address, length, immediate,
/// sequence) is authenticated with it, and a 16-byte tag follows the ciphertext on the wire.
///
/// The nonce is the frame's WR sequence number (little-endian, after four zero bytes): it is
/// unique per direction for the life of a connection, and each direction has its own key
/// from the handshake, so no (key, nonce) pair ever repeats.
///
/// Hot path: no allocation; the sender seals straight from registered memory into its
/// staging, the receiver opens in place in the window the payload was read into.
final class TCPFrameCipher: @unchecked Sendable {
    static let tagSize = 16
    /// Immutable after init; BoringSSL's EVP_AEAD_CTX may be used from several threads.
    private let context: OpaquePointer

    init(key bytes: [UInt8]) {
        precondition(bytes.count == 32, "AES-256 needs a 32-byte key")
        guard let context = bytes.withUnsafeBufferPointer({ rdmig_aead_aes256gcm_new($0.baseAddress!) }) else {
            fatalError("BoringSSL refused an AES-256-GCM context for a 32-byte key")
        }
        self.context = context
    }

    deinit { rdmig_aead_free(context) }

    /// The 12-byte nonce of frame `sequence`: four zero bytes, then the sequence, little-endian.
    @inline(__always)
    private func withNonce<Result>(_ sequence: UInt64, _ body: (UnsafePointer<UInt8>) -> Result) -> Result {
        var nonce: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &nonce) { bytes in
            bytes.storeBytes(of: sequence.littleEndian, toByteOffset: 4, as: UInt64.self)
            return body(bytes.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
    }

    /// Encrypts `payload` into `output` (its length plus the tag); `header` is authenticated.
    func seal(_ payload: UnsafeRawBufferPointer, header: UnsafeRawBufferPointer, sequence: UInt64,
              into output: UnsafeMutableRawBufferPointer) -> Bool {
        precondition(output.count >= payload.count + Self.tagSize, "cipher output too small")
        return withNonce(sequence) { nonce in
            rdmig_aead_seal(context, output.baseAddress!.assumingMemoryBound(to: UInt8.self), nonce,
                            payload.baseAddress?.assumingMemoryBound(to: UInt8.self), payload.count,
                            header.baseAddress!.assumingMemoryBound(to: UInt8.self), header.count) == 1
        }
    }

    /// Checks `tag` over `ciphertext` and `header` and decrypts `ciphertext` in place; false
    /// when the frame was not sealed with this key for this sequence number (changed,
    /// replayed, reordered or forged).
    func open(_ ciphertext: UnsafeMutableRawBufferPointer, tag: UnsafeRawBufferPointer, header: UnsafeRawBufferPointer,
              sequence: UInt64) -> Bool {
        withNonce(sequence) { nonce in
            rdmig_aead_open(context, ciphertext.baseAddress?.assumingMemoryBound(to: UInt8.self), nonce, ciphertext.count,
                            tag.baseAddress!.assumingMemoryBound(to: UInt8.self),
                            header.baseAddress!.assumingMemoryBound(to: UInt8.self), header.count) == 1
        }
    }
}
