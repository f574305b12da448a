import RdmigSystem

/// A digest of a device's canonical state, compared at switchover: source and destination
/// each compute it from their own object tables (never from the bytes that travelled), so
/// equal digests mean the destination rebuilt the same state, not merely received it.
///
/// Two independent checksums (CRC-32C and 64-bit FNV-1a) over the canonical bytes, with
/// the object and byte counts: 96 bits of checksum against accidental corruption.
public struct DeviceStateDigest: Hashable, Sendable, CustomStringConvertible {
    public var objectCount: UInt64
    public var byteCount: UInt64
    public var crc32c: UInt32
    public var fnv1a64: UInt64

    public init(objectCount: UInt64, byteCount: UInt64, crc32c: UInt32, fnv1a64: UInt64) {
        self.objectCount = objectCount
        self.byteCount = byteCount
        self.crc32c = crc32c
        self.fnv1a64 = fnv1a64
    }

    /// Size of `encoded` (for the control channel and the ib-sw stream's end entry).
    public static let encodedSize = 28

    /// Little-endian: objectCount u64, byteCount u64, crc32c u32, fnv1a64 u64.
    public var encoded: [UInt8] {
        var bytes = [UInt8](repeating: 0, count: DeviceStateDigest.encodedSize)
        bytes.withUnsafeMutableBytes { raw in
            var writer = ByteWriter(raw)
            writer.u64(objectCount)
            writer.u64(byteCount)
            writer.u32(crc32c)
            writer.u64(fnv1a64)
        }
        return bytes
    }

    /// Decodes `encoded`; nil when the length is wrong.
    public init?(encoded bytes: some Collection<UInt8>) {
        guard bytes.count == DeviceStateDigest.encodedSize else { return nil }
        let array = Array(bytes)
        var result = DeviceStateDigest(objectCount: 0, byteCount: 0, crc32c: 0, fnv1a64: 0)
        array.withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            result = DeviceStateDigest(
                objectCount: reader.u64(), byteCount: reader.u64(), crc32c: reader.u32(), fnv1a64: reader.u64())
        }
        self = result
    }

    public var description: String {
        "\(objectCount) objects, \(byteCount) B, crc32c 0x\(String(crc32c, radix: 16)), fnv 0x\(String(fnv1a64, radix: 16))"
    }

    /// Builds a digest from the canonical bytes, given in any number of pieces.
    public struct Accumulator: Sendable {
        private var crc: UInt32 = 0
        private var fnv: UInt64 = 0xCBF2_9CE4_8422_2325
        private var bytes: UInt64 = 0
        private var objects: UInt64 = 0

        public init() {}

        public mutating func add(_ piece: UnsafeRawBufferPointer) {
            crc = CRC32C.checksum(piece, continuing: crc)
            var hash = fnv
            for byte in piece {
                hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            }
            fnv = hash
            bytes += UInt64(piece.count)
        }

        public mutating func countObjects(_ count: Int) { objects += UInt64(count) }

        public var digest: DeviceStateDigest {
            DeviceStateDigest(objectCount: objects, byteCount: bytes, crc32c: crc, fnv1a64: fnv)
        }
    }
}
