import RdmigChannels
import RdmigSystem
import Testing

enum CRC32CForTests {
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 { CRC32C.checksum(bytes) }
}

enum FrameEditing {
    /// Recomputes the payload checksum after a test edited the payload, then decodes.
    static func decodeAfterFixingChecksum(_ bytes: inout [UInt8]) throws -> ChannelError? {
        let checksum = bytes[ControlFrameHeader.size...].withUnsafeBytes { CRC32C.checksum($0) }
        withUnsafeBytes(of: checksum.littleEndian) { bytes.replaceSubrange(12..<16, with: $0) }
        do {
            _ = try bytes.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) }
            return nil
        } catch let error as ChannelError {
            return error
        }
    }
}

@Suite struct ControlFrameChecks {
    let frame: [UInt8]

    init() throws {
        frame = try ControlFrame.encodedBytes(MigrationMessage.iterationDone(.init(iteration: 1, pagesWritten: 2, zeroPages: 3, bytesWritten: 4)))
    }

    private func decode(_ bytes: [UInt8]) -> ChannelError? {
        do {
            _ = try bytes.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) }
            return nil
        } catch let error as ChannelError {
            return error
        } catch {
            return nil
        }
    }

    @Test func garbageIsNotAnRdmigFrame() {
        let garbage: [UInt8] = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        guard case .malformedFrame(let detail)? = decode(garbage) else {
            Issue.record("garbage was not refused as a malformed frame")
            return
        }
        #expect(detail.contains("bad magic"))
    }

    @Test func aFrameOfAnotherProtocolVersionGivesTheVersionErrorFirst() {
        var bytes = frame
        bytes[4] = 7
        bytes[5] = 0
        // Everything after the version is also garbage: the version error must still win.
        for index in 6..<bytes.count { bytes[index] = 0xEE }
        let error = decode(bytes)
        #expect(error == .versionMismatch(peer: 7, local: RdmigProtocol.version))
        #expect(error?.description.hasPrefix("peer speaks rdmig protocol v7, this is v\(RdmigProtocol.version)") == true)
    }

    @Test func everyTruncatedFrameIsRefused() {
        for length in 0..<frame.count {
            let error = decode(Array(frame[..<length]))
            guard case .malformedFrame? = error else {
                Issue.record("frame cut to \(length) bytes gave \(String(describing: error))")
                continue
            }
        }
    }

    @Test func aCorruptedPayloadFailsItsChecksum() {
        var bytes = frame
        bytes[ControlFrameHeader.size + 5] ^= 0x10
        guard case .malformedFrame(let detail)? = decode(bytes) else {
            Issue.record("corruption was not detected")
            return
        }
        #expect(detail.contains("ITERATION_DONE") && detail.contains("checksum"))
    }

    @Test func anUnknownMessageTypeIsNamed() {
        var bytes = frame
        bytes[6] = 0xFF
        bytes[7] = 0x7F
        #expect(decode(bytes) == .malformedMessage(.unknownMessageType(0x7FFF)))
        #expect(ChannelError.malformedMessage(.unknownMessageType(0x7FFF)).description == "unknown control message type 32767")
    }
}
