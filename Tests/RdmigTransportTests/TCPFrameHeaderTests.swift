@testable import RdmigTransport
import Testing

/// The `tcp` backend's wire format: fixed offsets, little-endian.
@Suite struct TCPFrameHeaderTests {
    @Test func headerFieldsSitAtFixedLittleEndianOffsets() {
        let header = TCPFrameHeader(kind: .write, flags: [.hasImmediate, .completionRequested], key: 0x0403_0201,
                                    address: 0x0C0B_0A09_0807_0605, length: 0x100F_0E0D, immediate: 0x1413_1211,
                                    sequence: 0x1C1B_1A19_1817_1615)
        var bytes = [UInt8](repeating: 0xFF, count: TCPFrameHeader.size)
        bytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
        #expect(bytes == [1, 3, 0, 0, 0x01, 0x02, 0x03, 0x04,
                          0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C,
                          0x0D, 0x0E, 0x0F, 0x10, 0x11, 0x12, 0x13, 0x14,
                          0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1C])
        let decoded = bytes.withUnsafeBytes { TCPFrameHeader(decoding: $0.baseAddress!) }
        #expect(decoded == header)
    }

    @Test func headersDecodeFromUnalignedBytes() {
        let header = TCPFrameHeader(kind: .ack, address: 512, sequence: 77)
        var bytes = [UInt8](repeating: 0, count: TCPFrameHeader.size + 3)
        bytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress! + 3) }
        let decoded = bytes.withUnsafeBytes { TCPFrameHeader(decoding: $0.baseAddress! + 3) }
        #expect(decoded == header && decoded.kind == .ack)
    }

    @Test func unknownKindsStayVisible() {
        var bytes = [UInt8](repeating: 0, count: TCPFrameHeader.size)
        bytes[0] = 0x77
        let decoded = bytes.withUnsafeBytes { TCPFrameHeader(decoding: $0.baseAddress!) }
        #expect(decoded.kind == nil && decoded.kindByte == 0x77)
    }

    @Test func preambleIsMagicThenVersion() {
        #expect(TCPPreamble.encode() == Array("RDMIGTCP".utf8) + [1, 0, 0, 0, 0, 0, 0, 0])
        #expect(TCPPreamble.encode(version: 0x0102) == Array("RDMIGTCP".utf8) + [2, 1, 0, 0, 0, 0, 0, 0])
    }
}
