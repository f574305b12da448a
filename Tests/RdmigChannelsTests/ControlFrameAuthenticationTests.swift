import RdmigChannels
import RdmigSystem
import Testing

/// After the handshake every control frame carries a MAC under the session key, over its
/// sequence number in its direction: someone on the path who rewrites a frame — and fixes its
/// CRC-32C, which any attacker can — or replays, drops or reorders frames is caught.
@Suite struct ControlFrameAuthentication {
    let keys = SessionKeys(preSharedKey: Array(repeating: 7, count: 32), sourceNonce: Array(repeating: 1, count: 32),
                           destinationNonce: Array(repeating: 2, count: 32))
    let message = MigrationMessage.iterationDone(.init(iteration: 1, pagesWritten: 2, zeroPages: 3, bytesWritten: 4))

    func seal(_ message: MigrationMessage, sequence: UInt64) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 512)
        let length = try buffer.withUnsafeMutableBytes {
            try ControlFrame.encode(message, into: $0, authenticator: keys.frameAuthenticator(sending: .source), sequence: sequence)
        }
        return Array(buffer[..<length])
    }

    func open(_ frame: [UInt8], sequence: UInt64, receiver: MigrationMessage.Role = .destination) -> Result<MigrationMessage, ChannelError> {
        frame.withUnsafeBytes { bytes in
            Result { () throws(ChannelError) -> MigrationMessage in
                try ControlFrame.decode(bytes, as: MigrationMessage.self, authenticator: keys.frameAuthenticator(sending: receiver), sequence: sequence)
            }
        }
    }

    func isAuthenticationFailure(_ result: Result<MigrationMessage, ChannelError>) -> Bool {
        if case .failure(.authenticationFailed) = result { return true }
        return false
    }

    @Test func aSealedFrameOpensOnThePeerAtItsSequenceNumber() throws {
        let frame = try seal(message, sequence: 5)
        #expect(frame.count == ControlFrameHeader.size + (try WireWriter.encodedSize(of: message)) + ControlFrameAuthenticator.tagSize)
        #expect(try open(frame, sequence: 5).get() == message)
    }

    @Test func aRewrittenPayloadWithAFixedChecksumFailsTheMAC() throws {
        var frame = try seal(message, sequence: 0)
        frame[ControlFrameHeader.size] ^= 0x01
        let payloadEnd = frame.count - ControlFrameAuthenticator.tagSize
        let checksum = frame[ControlFrameHeader.size..<payloadEnd].withUnsafeBytes { CRC32C.checksum($0) }
        withUnsafeBytes(of: checksum.littleEndian) { frame.replaceSubrange(12..<16, with: $0) }
        // Without the MAC this frame decodes: the checksum is right.
        let unsealed = Array(frame[..<payloadEnd])
        #expect(throws: Never.self) { try unsealed.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) } }
        #expect(isAuthenticationFailure(open(frame, sequence: 0)))
    }

    @Test func aReplayedOrReorderedFrameFailsTheMAC() throws {
        let first = try seal(message, sequence: 0)
        #expect(isAuthenticationFailure(open(first, sequence: 1)), "replayed as the second frame")
        let second = try seal(message, sequence: 1)
        #expect(isAuthenticationFailure(open(second, sequence: 0)), "delivered before the first")
    }

    @Test func aFrameCannotBeReflectedBackToItsSender() throws {
        let frame = try seal(message, sequence: 0)
        #expect(isAuthenticationFailure(open(frame, sequence: 0, receiver: .source)))
    }

    @Test func aFrameWithoutItsTagOrSealedWithAnotherKeyIsRefused() throws {
        let plain = try ControlFrame.encodedBytes(message)
        #expect(isAuthenticationFailure(open(plain, sequence: 0)))
        let other = SessionKeys(preSharedKey: Array(repeating: 8, count: 32), sourceNonce: Array(repeating: 1, count: 32),
                                destinationNonce: Array(repeating: 2, count: 32))
        var buffer = [UInt8](repeating: 0, count: 512)
        let length = try buffer.withUnsafeMutableBytes {
            try ControlFrame.encode(message, into: $0, authenticator: other.frameAuthenticator(sending: .source), sequence: 0)
        }
        #expect(isAuthenticationFailure(open(Array(buffer[..<length]), sequence: 0)))
    }

    @Test func sessionKeysDependOnBothNoncesAndTheKey() {
        let again = SessionKeys(preSharedKey: Array(repeating: 7, count: 32), sourceNonce: Array(repeating: 1, count: 32),
                                destinationNonce: Array(repeating: 2, count: 32))
        #expect(again.sourceToDestination == keys.sourceToDestination && again.digestSeed == keys.digestSeed)
        let otherNonce = SessionKeys(preSharedKey: Array(repeating: 7, count: 32), sourceNonce: Array(repeating: 1, count: 32),
                                     destinationNonce: Array(repeating: 3, count: 32))
        #expect(otherNonce.sourceToDestination != keys.sourceToDestination && otherNonce.digestSeed != keys.digestSeed)
        #expect(keys.sourceToDestination != keys.destinationToSource)
    }
}
