/// The first 16 bytes each side sends after the TCP connection is up, before any frame:
/// the magic `RDMIGTCP` (8 ASCII bytes), the protocol version (UInt32, little-endian) and
/// 4 reserved zero bytes. Both sides send theirs at once and then read the peer's, so neither
/// waits for the other; a peer that sends anything else is refused before any frame is read.
///
/// `package`: the fuzz targets (Tests/fuzz) check it too.
package enum TCPPreamble {
    package static let size = 16
    package static let magic: [UInt8] = Array("RDMIGTCP".utf8)
    /// Version 1: the frame format of `TCPFrameHeader`.
    package static let version: UInt32 = 1

    package static func encode(version: UInt32 = TCPPreamble.version) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: version.littleEndian) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [0, 0, 0, 0])
        return bytes
    }

    /// Checks what the peer sent (fewer than `size` bytes when it closed early).
    package static func validate(_ received: [UInt8], from peer: TransportEndpoint) throws(TransportError) {
        guard received.count == size else {
            throw .protocolViolation(detail: "peer \(peer) closed the connection after \(received.count) of the "
                + "\(size) preamble bytes (received \(describe(received))); is it an rdmig tcp transport?")
        }
        guard Array(received.prefix(magic.count)) == magic else {
            throw .protocolViolation(detail: "peer \(peer) is not an rdmig tcp transport: expected the preamble "
                + "'RDMIGTCP', received \(describe(received))")
        }
        let version = received[8..<12].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard version == TCPPreamble.version else {
            throw .protocolViolation(detail: "peer \(peer) speaks rdmig tcp protocol version \(version), this side "
                + "speaks version \(TCPPreamble.version): run the same rdmig release on both ends")
        }
    }

    /// Hex bytes and, where printable, the ASCII text: `47 45 54 20 ("GET ")`.
    package static func describe(_ bytes: [UInt8]) -> String {
        guard !bytes.isEmpty else { return "nothing" }
        let hex = bytes.map { byte -> String in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
        let text = String(decoding: bytes.map { (0x20..<0x7f).contains($0) ? $0 : UInt8(ascii: ".") }, as: UTF8.self)
        return "\(hex) (\"\(text)\")"
    }
}
