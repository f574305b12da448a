import RdmigSystem

/// The fixed header of a device-state chunk record, as streamed over the byte-stream
/// channel: 32 bytes, little-endian, followed by `length` payload bytes.
///
/// ```
/// offset size field
///      0    4 magic        "RDVS" (0x52 0x44 0x56 0x53)
///      4    2 version      1
///      6    1 phase        1 precopy, 2 stopcopy
///      7    1 flags        bit 0 end-of-phase, bit 1 initial-data-complete
///      8    8 seq          0, 1, 2, ... over the whole stream (all devices)
///     16    4 tag          which device (its LAYOUT device id)
///     20    4 length       payload bytes (at most the receiver's limit, 1 MiB by default)
///     24    4 crc32c       CRC-32C of the payload
///     28    4 header crc   CRC-32C of bytes 0..<28
/// ```
/// The payload is a piece of the device's opaque state stream (the VFIO data fd's bytes);
/// pieces of one tag concatenate, in seq order, to that stream. The header checksum lets a
/// receiver refuse garbage before trusting `length`.
public struct ChunkRecordHeader: Equatable, Sendable, CustomStringConvertible {
    public var seq: UInt64
    public var phase: ChunkPhase
    public var tag: UInt32
    public var flags: ChunkRecordFlags
    public var length: UInt32
    public var crc32c: UInt32

    public init(seq: UInt64, phase: ChunkPhase, tag: UInt32, flags: ChunkRecordFlags, length: UInt32, crc32c: UInt32) {
        self.seq = seq
        self.phase = phase
        self.tag = tag
        self.flags = flags
        self.length = length
        self.crc32c = crc32c
    }

    public static let size = 32
    /// "RDVS" read as a little-endian u32.
    public static let magic: UInt32 = 0x5356_4452
    public static let version: UInt16 = 1
    /// QEMU moves VFIO device state in pieces of at most 1 MiB
    /// (VFIO_MIG_DEFAULT_DATA_BUFFER_SIZE, qemu/qemu hw/vfio/migration.c: larger buffers did
    /// not help mlx5); a record carries one such piece.
    public static let defaultMaxPayload = 1 << 20

    /// Writes the 32 header bytes at the start of `buffer` (at least `size` bytes).
    public func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= ChunkRecordHeader.size, "chunk record header needs 32 bytes")
        var writer = ByteWriter(buffer)
        writer.u32(ChunkRecordHeader.magic)
        writer.u16(ChunkRecordHeader.version)
        writer.u8(phase.rawValue)
        writer.u8(flags.rawValue)
        writer.u64(seq)
        writer.u32(tag)
        writer.u32(length)
        writer.u32(crc32c)
        let headerCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: buffer[0..<28]))
        writer.u32(headerCRC)
    }

    /// Parses and checks the header at the start of `bytes` (at least `size` bytes): magic,
    /// version, header checksum, phase, flags and the payload limit. `offset` is where the
    /// record starts in the stream, for the error.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer, offset: UInt64, maxPayload: Int
    ) throws(ChunkRecordError) -> ChunkRecordHeader {
        precondition(bytes.count >= size, "parse needs the whole 32-byte header")
        var reader = ByteReader(bytes)
        let magic = reader.u32()
        guard magic == ChunkRecordHeader.magic else { throw .badMagic(offset: offset, found: magic) }
        let version = reader.u16()
        guard version == ChunkRecordHeader.version else {
            throw .unsupportedVersion(offset: offset, found: version, supported: ChunkRecordHeader.version)
        }
        let rawPhase = reader.u8()
        let rawFlags = reader.u8()
        let seq = reader.u64()
        let tag = reader.u32()
        let length = reader.u32()
        let crc = reader.u32()
        let storedHeaderCRC = reader.u32()
        let headerCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<28]))
        guard storedHeaderCRC == headerCRC else {
            throw .headerChecksumMismatch(offset: offset, stored: storedHeaderCRC, computed: headerCRC)
        }
        guard let phase = ChunkPhase(rawValue: rawPhase) else {
            throw .unknownPhase(seq: seq, offset: offset, raw: rawPhase)
        }
        guard rawFlags & ~ChunkRecordFlags.known.rawValue == 0 else {
            throw .unknownFlags(seq: seq, offset: offset, raw: rawFlags)
        }
        guard Int(length) <= maxPayload else {
            throw .payloadTooLarge(seq: seq, offset: offset, length: length, limit: maxPayload)
        }
        return ChunkRecordHeader(
            seq: seq, phase: phase, tag: tag, flags: ChunkRecordFlags(rawValue: rawFlags), length: length, crc32c: crc)
    }

    public var description: String {
        "record \(seq) \(phase) tag \(tag) flags \(flags) \(length) B"
    }
}
