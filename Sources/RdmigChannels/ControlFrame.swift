import RdmigSystem

/// Encoding and decoding of whole control frames (header + payload) in place, in a
/// registered buffer: the send path writes straight into its send slot, the receive path
/// decodes straight out of the receive buffer.
public enum ControlFrame {
    /// Encodes `message` into `buffer` and returns the frame's length.
    public static func encode<M: ControlMessage>(_ message: M, into buffer: UnsafeMutableRawBufferPointer) throws(ChannelError) -> Int {
        guard buffer.count >= ControlFrameHeader.size else {
            throw .messageTooLarge(message: message.wireName, bytes: ControlFrameHeader.size, limit: buffer.count)
        }
        let payloadArea = UnsafeMutableRawBufferPointer(rebasing: buffer[ControlFrameHeader.size...])
        var writer = WireWriter(into: payloadArea, messageName: message.wireName)
        do {
            try message.encodePayload(to: &writer)
        } catch {
            if case .overflow = error, let size = try? WireWriter.encodedSize(of: message) {
                throw .messageTooLarge(message: message.wireName, bytes: ControlFrameHeader.size + size, limit: buffer.count)
            }
            throw .malformedMessage(error)
        }
        let payload = UnsafeRawBufferPointer(rebasing: payloadArea[..<writer.count])
        ControlFrameHeader(type: message.wireType, payloadLength: UInt32(writer.count),
                           payloadChecksum: CRC32C.checksum(payload)).store(into: buffer)
        return ControlFrameHeader.size + writer.count
    }

    /// Decodes one frame that arrived as `frame` (exactly the bytes received).
    public static func decode<M: ControlMessage>(_ frame: UnsafeRawBufferPointer, as type: M.Type) throws(ChannelError) -> M {
        let header = try ControlFrameHeader.load(from: frame)
        let payload = UnsafeRawBufferPointer(rebasing: frame[ControlFrameHeader.size...])
        guard let name = M.name(ofType: header.type) else {
            throw .malformedMessage(.unknownMessageType(header.type))
        }
        let checksum = CRC32C.checksum(payload)
        guard checksum == header.payloadChecksum else {
            throw .malformedFrame(detail: "\(name) payload checksum 0x\(String(checksum, radix: 16)) does not match the header's 0x\(String(header.payloadChecksum, radix: 16)): the frame was corrupted")
        }
        var reader = WireReader(payload, messageName: name)
        do {
            let message = try M.decode(type: header.type, payload: &reader)
            try reader.finish()
            return message
        } catch {
            throw .malformedMessage(error)
        }
    }

    /// Encodes into a new array (tests, logs; the channel itself never allocates a frame).
    public static func encodedBytes<M: ControlMessage>(_ message: M) throws(ChannelError) -> [UInt8] {
        let size: Int
        do { size = try WireWriter.encodedSize(of: message) } catch { throw .malformedMessage(error) }
        var bytes = [UInt8](repeating: 0, count: ControlFrameHeader.size + size)
        let result: Result<Int, ChannelError> = bytes.withUnsafeMutableBytes { raw in
            do throws(ChannelError) { return .success(try encode(message, into: raw)) } catch { return .failure(error) }
        }
        let written = try result.get()
        precondition(written == bytes.count, "control frame size changed between counting and encoding")
        return bytes
    }
}
