/// The fixed 32-byte header in front of every frame of the `tcp` backend, little-endian:
///
/// | offset | size | WRITE            | SEND         | ACK                      | ERROR              | CLOSE |
/// |-------:|-----:|------------------|--------------|--------------------------|--------------------|-------|
/// | 0      | 1    | kind 1           | kind 2       | kind 3                   | kind 4             | kind 5|
/// | 1      | 1    | flags            | flags        | 0                        | 0                  | 0     |
/// | 2      | 2    | 0                | 0            | 0                        | 0                  | 0     |
/// | 4      | 4    | rkey             | 0            | 0                        | error code         | 0     |
/// | 8      | 8    | target address   | 0            | receives posted (credits)| 0                  | 0     |
/// | 16     | 4    | payload length   | payload len. | 0                        | text length        | 0     |
/// | 20     | 4    | immediate        | 0            | 0                        | 0                  | 0     |
/// | 24     | 8    | WR sequence      | WR sequence  | cumulative acked sequence| offending sequence | 0     |
///
/// The payload (WRITE, SEND) or UTF-8 text (ERROR) follows the header directly. Flags: bit 0
/// has-immediate (WRITE_WITH_IMM), bit 1 completion-requested (the WR was signalled: the
/// receiver acknowledges it once its bytes are placed).
///
/// The header is encoded into and decoded from caller-owned bytes, so framing never
/// allocates; fields are explicit byte offsets because Swift does not promise a struct layout.
///
/// `package`: the fuzz targets (Tests/fuzz) decode it too.
package struct TCPFrameHeader: Equatable, Sendable {
    package static let size = 32

    package enum Kind: UInt8, Sendable {
        case write = 1
        case send = 2
        case ack = 3
        case error = 4
        case close = 5
    }

    package struct Flags: OptionSet, Sendable {
        package let rawValue: UInt8
        package init(rawValue: UInt8) { self.rawValue = rawValue }
        package static let hasImmediate = Flags(rawValue: 1 << 0)
        package static let completionRequested = Flags(rawValue: 1 << 1)
        /// The payload is AES-256-GCM ciphertext with a 16-byte tag after it (`TCPFrameCipher`).
        package static let encrypted = Flags(rawValue: 1 << 2)
        package static let known: Flags = [.hasImmediate, .completionRequested, .encrypted]
    }

    /// Why an ERROR frame tears the connection down.
    package enum ErrorCode: UInt32, Sendable {
        /// A WRITE named an unknown key or reached outside the key's window (IBV_WC_REM_ACCESS_ERR).
        case remoteAccess = 1
        /// A SEND was larger than the receive it consumed (the sender sees IBV_WC_REM_INV_REQ_ERR).
        case receiveTooSmall = 2
        /// The bytes received were not this protocol.
        case protocolViolation = 3
    }

    /// The raw kind byte: kept raw so that a frame of unknown kind can be reported as received.
    package var kindByte: UInt8
    package var flags: Flags
    package var key: UInt32
    package var address: UInt64
    package var length: UInt32
    package var immediate: UInt32
    package var sequence: UInt64

    package init(kind: Kind, flags: Flags = [], key: UInt32 = 0, address: UInt64 = 0, length: UInt32 = 0,
         immediate: UInt32 = 0, sequence: UInt64 = 0) {
        self.kindByte = kind.rawValue
        self.flags = flags
        self.key = key
        self.address = address
        self.length = length
        self.immediate = immediate
        self.sequence = sequence
    }

    package var kind: Kind? { Kind(rawValue: kindByte) }

    @inline(__always)
    package func encode(into bytes: UnsafeMutableRawPointer) {
        bytes.storeBytes(of: kindByte, toByteOffset: 0, as: UInt8.self)
        bytes.storeBytes(of: flags.rawValue, toByteOffset: 1, as: UInt8.self)
        bytes.storeBytes(of: UInt16(0), toByteOffset: 2, as: UInt16.self)
        bytes.storeBytes(of: key.littleEndian, toByteOffset: 4, as: UInt32.self)
        bytes.storeBytes(of: address.littleEndian, toByteOffset: 8, as: UInt64.self)
        bytes.storeBytes(of: length.littleEndian, toByteOffset: 16, as: UInt32.self)
        bytes.storeBytes(of: immediate.littleEndian, toByteOffset: 20, as: UInt32.self)
        bytes.storeBytes(of: sequence.littleEndian, toByteOffset: 24, as: UInt64.self)
    }

    @inline(__always)
    package init(decoding bytes: UnsafeRawPointer) {
        kindByte = bytes.load(fromByteOffset: 0, as: UInt8.self)
        flags = Flags(rawValue: bytes.load(fromByteOffset: 1, as: UInt8.self))
        key = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        address = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        length = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        immediate = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        sequence = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }
}
