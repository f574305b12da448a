import RdmigSystem

/// Encoding and decoding of whole control frames (header + payload) in place, in a
/// registered buffer: the send path writes straight into its send slot, the receive path
/// decodes straight out of the receive buffer.
public enum ControlFrame {
    /// Encodes `message` into `buffer` and returns the frame's length. With an authenticator,
    /// the frame ends in its keyed MAC for send `sequence` (see `ControlFrameAuthenticator`).
    public static func encode<M: ControlMessage>(_ message: M, into buffer: UnsafeMutableRawBufferPointer,
                                                 authenticator: ControlFrameAuthenticator? = nil,
                                                 sequence: UInt64 = 0) throws(ChannelError) -> Int {
        let tagSize = authenticator == nil ? 0 : ControlFrameAuthenticator.tagSize
        guard buffer.count >= ControlFrameHeader.size + tagSize else {
            throw .messageTooLarge(message: message.wireName, bytes: ControlFrameHeader.size + tagSize, limit: buffer.count)
        }
        let payloadArea = UnsafeMutableRawBufferPointer(rebasing: buffer[ControlFrameHeader.size..<(buffer.count - tagSize)])
        var writer = WireWriter(into: payloadArea, messageName: message.wireName)
        do {
            try message.encodePayload(to: &writer)
        } catch {
            if case .overflow = error, let size = try? WireWriter.encodedSize(of: message) {
                throw .messageTooLarge(message: message.wireName, bytes: ControlFrameHeader.size + size + tagSize, limit: buffer.count)
            }
            throw .malformedMessage(error)
        }
        let payload = UnsafeRawBufferPointer(rebasing: payloadArea[..<writer.count])
        ControlFrameHeader(type: message.wireType, payloadLength: UInt32(writer.count),
                           payloadChecksum: CRC32C.checksum(payload)).store(into: buffer)
        let length = ControlFrameHeader.size + writer.count
        if let authenticator {
            authenticator.seal(UnsafeRawBufferPointer(rebasing: buffer[..<length]), sequence: sequence,
                               into: UnsafeMutableRawBufferPointer(rebasing: buffer[length..<(length + tagSize)]))
        }
        return length + tagSize
    }

    /// Decodes one frame that arrived as `frame` (exactly the bytes received). With an
    /// authenticator the frame must end in the keyed MAC for receive `sequence`, checked
    /// before any field of the message is looked at.
    public static func decode<M: ControlMessage>(_ received: UnsafeRawBufferPointer, as type: M.Type,
                                                 authenticator: ControlFrameAuthenticator? = nil,
                                                 sequence: UInt64 = 0) throws(ChannelError) -> M {
        var frame = received
        if let authenticator {
            let tagSize = ControlFrameAuthenticator.tagSize
            guard received.count >= ControlFrameHeader.size + tagSize else {
                _ = try ControlFrameHeader.load(from: received)
                throw .authenticationFailed(detail: "a \(received.count)-byte frame has no room for its \(tagSize)-byte MAC")
            }
            frame = UnsafeRawBufferPointer(rebasing: received[..<(received.count - tagSize)])
            let tag = UnsafeRawBufferPointer(rebasing: received[(received.count - tagSize)...])
            guard authenticator.check(frame, sequence: sequence, received: tag) else {
                // Magic and version still come first, so a peer of another release is told so.
                do {
                    _ = try ControlFrameHeader.load(from: received)
                } catch {
                    if case .versionMismatch = error { throw error }
                    if received.count >= 4, received.loadUnaligned(as: UInt32.self) != ControlFrameHeader.magic.littleEndian { throw error }
                }
                throw .authenticationFailed(detail: "frame #\(sequence) of \(received.count) bytes does not carry this session's MAC: "
                    + "it was changed, replayed or reordered on the path, or sent without the session key")
            }
        }
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
