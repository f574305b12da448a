import RdmigTransport

/// The `tcp` backend's wire: the preamble each side sends first and the frame header in front
/// of every frame. (What a frame then does — key and bounds checks, sequence numbers — is
/// covered by RdmigTransportTests' raw-peer tests, which need a connection.)
enum TCPTargets {
    static let peer = TransportEndpoint(host: "fuzz.invalid", port: 7471)

    /// Byte 0 picks what the rest is: even, one or more 32-byte frame headers; odd, a preamble.
    static func frame(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        guard let mode = input.first else { return }
        let rest = UnsafeRawBufferPointer(rebasing: input[1...])
        if mode % 2 == 0 {
            try checkHeaders(rest)
        } else {
            try checkPreamble(Array(rest))
        }
    }

    /// Every header decodes (the receiver reads exactly 32 bytes, then judges the fields) and
    /// encodes back to the same bytes, but for the two reserved bytes the encoder writes as 0.
    static func checkHeaders(_ bytes: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        var start = 0
        var encoded = [UInt8](repeating: 0, count: TCPFrameHeader.size)
        while start + TCPFrameHeader.size <= bytes.count {
            let header = TCPFrameHeader(decoding: bytes.baseAddress! + start)
            encoded.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
            var expected = Array(bytes[start..<(start + TCPFrameHeader.size)])
            expected[2] = 0
            expected[3] = 0
            guard encoded == expected else {
                throw FuzzPropertyViolation(.tcpFrame, "header \(hexPrefix(expected)) re-encodes to \(hexPrefix(encoded))")
            }
            guard (header.kind?.rawValue ?? header.kindByte) == header.kindByte else {
                throw FuzzPropertyViolation(.tcpFrame, "kind byte \(header.kindByte) decodes to another kind")
            }
            start += TCPFrameHeader.size
        }
    }

    /// Only 16 bytes with this release's magic and version are accepted (the 4 reserved bytes
    /// are not looked at, like the reserved bytes of a frame header); anything else is a
    /// protocol violation (never a crash, whatever its length), and its description prints.
    static func checkPreamble(_ received: [UInt8]) throws(FuzzPropertyViolation) {
        let accepted: Bool
        do throws(TransportError) {
            try TCPPreamble.validate(received, from: peer)
            accepted = true
        } catch {
            guard case .protocolViolation = error else {
                throw FuzzPropertyViolation(.tcpFrame, "a bad preamble was refused with \(error), not a protocol violation")
            }
            accepted = false
        }
        let expected = received.count == TCPPreamble.size && received.prefix(12).elementsEqual(TCPPreamble.encode().prefix(12))
        guard accepted == expected else {
            throw FuzzPropertyViolation(.tcpFrame, "preamble \(hexPrefix(received)) was \(accepted ? "accepted" : "refused")")
        }
        _ = TCPPreamble.describe(received)
    }
}
