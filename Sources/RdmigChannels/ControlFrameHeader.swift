import RdmigSystem

/// The 16-byte header in front of every control message:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `RMIG` |
/// | 4 | 2 | protocol version |
/// | 6 | 2 | message type |
/// | 8 | 4 | payload length |
/// | 12 | 4 | CRC-32C of the payload |
///
/// Magic and version stay at these offsets in every future version, so that any two
/// releases can at least tell each other which version they speak.
public struct ControlFrameHeader: Equatable, Sendable {
    /// "RMIG" in wire (little-endian) order.
    public static let magic: UInt32 = 0x4749_4D52
    public static let size = 16

    public var version: UInt16
    public var type: UInt16
    public var payloadLength: UInt32
    public var payloadChecksum: UInt32

    public init(version: UInt16 = RdmigProtocol.version, type: UInt16, payloadLength: UInt32, payloadChecksum: UInt32) {
        self.version = version
        self.type = type
        self.payloadLength = payloadLength
        self.payloadChecksum = payloadChecksum
    }

    /// Writes the header into the first `size` bytes of `buffer`.
    public func store(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Self.size, "control frame buffer smaller than its header")
        let base = buffer.baseAddress!
        base.storeBytes(of: Self.magic.littleEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: version.littleEndian, toByteOffset: 4, as: UInt16.self)
        base.storeBytes(of: type.littleEndian, toByteOffset: 6, as: UInt16.self)
        base.storeBytes(of: payloadLength.littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: payloadChecksum.littleEndian, toByteOffset: 12, as: UInt32.self)
    }

    /// Reads and checks a header: magic first (is this an rdmig frame at all), then the
    /// version (so that a peer of another release gets the version error, not a decoding
    /// error), then the length against the bytes that arrived.
    public static func load(from frame: UnsafeRawBufferPointer) throws(ChannelError) -> ControlFrameHeader {
        guard frame.count >= 8 else {
            throw .malformedFrame(detail: "\(frame.count) bytes received, a control frame header needs \(size)")
        }
        let base = frame.baseAddress!
        let magic = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        guard magic == Self.magic else {
            throw .malformedFrame(detail: "bad magic 0x\(String(magic, radix: 16)) (expected 0x\(String(Self.magic, radix: 16)), \"RMIG\"): the peer is not speaking rdmig's control protocol")
        }
        let version = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
        guard version == RdmigProtocol.version else {
            throw .versionMismatch(peer: version, local: RdmigProtocol.version)
        }
        guard frame.count >= size else {
            throw .malformedFrame(detail: "\(frame.count) bytes received, a control frame header needs \(size)")
        }
        let header = ControlFrameHeader(
            version: version,
            type: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 6, as: UInt16.self)),
            payloadLength: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
            payloadChecksum: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        let available = frame.count - size
        guard Int(header.payloadLength) == available else {
            throw .malformedFrame(detail: "header announces a \(header.payloadLength)-byte payload of type \(header.type) but \(available) bytes arrived")
        }
        return header
    }
}
