import Crypto
import RdmigChannels
import RdmigSystem
import RdmigTransport

/// Control frames: the header checks, every migration message's payload decoder, the router's
/// CHANNEL_SETUP and the authenticated path.
enum ControlFrameTargets {
    static func frame(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        try checkMigrationFrame(input, as: .controlFrame)
    }

    static func message(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        guard let type = input.first else { return }
        let frame = framed(type: UInt16(type), payload: UnsafeRawBufferPointer(rebasing: input[1...]))
        let result: Result<Void, FuzzPropertyViolation> = frame.withUnsafeBytes { raw in
            do throws(FuzzPropertyViolation) {
                if type == UInt8(ChannelSetup.typeCode) {
                    try checkChannelSetupFrame(raw)
                } else {
                    try checkMigrationFrame(raw, as: .controlMessage)
                }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Byte 0 picks the mode: 0 decodes the rest as a received frame (no valid MAC unless it
    /// is a seed); 1 appends the right MAC to the rest; 2 frames the rest like
    /// `control-message` and appends the right MAC. With a valid MAC the result must be what
    /// the unauthenticated decoder makes of the same frame, and at the next sequence number
    /// (a replay) the frame must be refused as unauthenticated.
    static func authenticated(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        guard let mode = input.first else { return }
        let rest = UnsafeRawBufferPointer(rebasing: input[1...])
        switch mode % 3 {
        case 0:
            let result = decode(rest, authenticator: receiver, sequence: 0)
            if case .success(let message) = result {
                // Only a frame sealed with the session's key at sequence 0 gets here.
                let resealed = encodeSealed(message, sequence: 0)
                guard resealed == Array(rest) else {
                    throw violation(.controlFrameAuthenticated, "an authenticated \(message.wireName) re-encodes differently")
                }
            }
        case 1:
            try checkSealed(Array(rest))
        default:
            guard let type = rest.first else { return }
            try checkSealed(framed(type: UInt16(type), payload: UnsafeRawBufferPointer(rebasing: rest[1...])))
        }
    }

    // MARK: Properties

    /// A frame the decoder accepts is the canonical encoding of the message it returns: the
    /// encoder writes exactly those bytes back (ZERO_PAGES also through the page channel's
    /// allocation-free `ZeroPagesFrame`). Errors are the frame and message errors only.
    static func checkMigrationFrame(_ frame: UnsafeRawBufferPointer, as target: FuzzTarget) throws(FuzzPropertyViolation) {
        switch decode(frame) {
        case .failure(let error):
            try checkDecodingError(error, target)
        case .success(let message):
            let encoded: [UInt8]
            do { encoded = try ControlFrame.encodedBytes(message) } catch {
                throw violation(target, "decoded \(message.wireName) does not encode again: \(error)")
            }
            guard encoded.elementsEqual(frame) else {
                throw violation(target, "decoded \(message.wireName) re-encodes to \(hexPrefix(encoded)), received \(hexPrefix(frame))")
            }
            if case .zeroPages(let zeroPages) = message {
                let viaFrame: [UInt8]
                do {
                    viaFrame = try zeroPages.runs.withUnsafeBufferPointer { runs throws(ChannelError) in
                        try ControlFrame.encodedBytes(ZeroPagesFrame(iteration: zeroPages.iteration, regionID: zeroPages.regionID, runs: runs))
                    }
                } catch {
                    throw violation(target, "ZeroPagesFrame does not encode a decoded ZERO_PAGES: \(error)")
                }
                guard viaFrame == encoded else {
                    throw violation(target, "ZeroPagesFrame encodes ZERO_PAGES differently from MigrationMessage.zeroPages")
                }
            }
        }
    }

    static func checkChannelSetupFrame(_ frame: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        let decoded: Result<ChannelSetup, ChannelError>
        do throws(ChannelError) {
            decoded = .success(try ControlFrame.decode(frame, as: ChannelSetup.self))
        } catch {
            decoded = .failure(error)
        }
        switch decoded {
        case .failure(let error):
            try checkDecodingError(error, .controlMessage)
        case .success(let setup):
            guard setup.receiveBufferSize >= UInt32(ControlFrameHeader.size) else {
                throw violation(.controlMessage, "CHANNEL_SETUP accepted a \(setup.receiveBufferSize)-byte receive buffer")
            }
            guard let encoded = try? ControlFrame.encodedBytes(setup), encoded.elementsEqual(frame) else {
                throw violation(.controlMessage, "decoded CHANNEL_SETUP does not re-encode to the \(hexPrefix(frame)) received")
            }
        }
    }

    /// `frame` with a valid MAC decodes exactly as without one; replayed at the next sequence
    /// number, or with one bit of its MAC changed, it is refused.
    static func checkSealed(_ frame: [UInt8]) throws(FuzzPropertyViolation) {
        let sequence: UInt64 = 5
        let sealed = frame + tag(frame, sequence: sequence)
        let plain = frame.withUnsafeBytes { decode($0) }
        let authenticated = sealed.withUnsafeBytes { decode($0, authenticator: receiver, sequence: sequence) }
        switch (plain, authenticated) {
        case (.success(let a), .success(let b)) where a == b: break
        case (.failure(let a), .failure(let b)) where a == b: break
        // Too short for a header and a MAC: the authenticated path reads the header from the
        // bytes received (MAC included) to name the problem, so the wording may differ.
        case (.failure, .failure) where frame.count < ControlFrameHeader.size: break
        default:
            throw violation(.controlFrameAuthenticated, "with a valid MAC the frame decodes as \(authenticated), without as \(plain)")
        }
        guard sealed.count >= ControlFrameHeader.size + ControlFrameAuthenticator.tagSize else { return }
        var flipped = sealed
        flipped[flipped.count - 1] ^= 0x01
        for (bytes, at) in [(sealed, sequence + 1), (flipped, sequence)] {
            let result = bytes.withUnsafeBytes { decode($0, authenticator: receiver, sequence: at) }
            switch result {
            case .failure(.authenticationFailed), .failure(.versionMismatch), .failure(.malformedFrame): break
            default:
                throw violation(.controlFrameAuthenticated, "a frame with a wrong MAC was not refused as unauthenticated: \(result)")
            }
        }
    }

    static func checkDecodingError(_ error: ChannelError, _ target: FuzzTarget) throws(FuzzPropertyViolation) {
        switch error {
        case .malformedFrame, .malformedMessage, .versionMismatch, .authenticationFailed: return
        default: throw violation(target, "decoding failed with an error that is not about the frame: \(error)")
        }
    }

    // MARK: Helpers

    static func decode(_ frame: UnsafeRawBufferPointer, authenticator: ControlFrameAuthenticator? = nil,
                       sequence: UInt64 = 0) -> Result<MigrationMessage, ChannelError> {
        do throws(ChannelError) {
            return .success(try ControlFrame.decode(frame, as: MigrationMessage.self, authenticator: authenticator, sequence: sequence))
        } catch {
            return .failure(error)
        }
    }

    /// A frame around `payload`: this protocol's magic and version, the payload's length and CRC.
    static func framed(type: UInt16, payload: UnsafeRawBufferPointer) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: ControlFrameHeader.size + payload.count)
        frame.withUnsafeMutableBytes { raw in
            ControlFrameHeader(type: type, payloadLength: UInt32(payload.count), payloadChecksum: CRC32C.checksum(payload))
                .store(into: raw)
            if payload.count > 0 {
                UnsafeMutableRawBufferPointer(rebasing: raw[ControlFrameHeader.size...]).copyMemory(from: payload)
            }
        }
        return frame
    }

    // Fixed keys: the fuzzer cannot forge MACs anyway, and fixed keys keep runs reproducible.
    static let sourceKey = [UInt8](repeating: 0x5A, count: 32)
    static let destinationKey = [UInt8](repeating: 0xA5, count: 32)
    /// The source's view: sends with `sourceKey`.
    static let sender = ControlFrameAuthenticator(sendKey: sourceKey, receiveKey: destinationKey)
    /// The destination's view: checks what the source sent.
    static let receiver = ControlFrameAuthenticator(sendKey: destinationKey, receiveKey: sourceKey)

    /// The MAC the control channel's spec (SessionKeys.swift) asks for, computed here
    /// independently: HMAC-SHA256(send key, sequence u64le ‖ header ‖ payload), first 16 bytes.
    static func tag(_ frame: [UInt8], sequence: UInt64) -> [UInt8] {
        var mac = HMAC<SHA256>(key: SymmetricKey(data: sourceKey))
        withUnsafeBytes(of: sequence.littleEndian) { mac.update(data: $0) }
        mac.update(data: frame)
        return Array(mac.finalize().withUnsafeBytes { Array($0) }.prefix(ControlFrameAuthenticator.tagSize))
    }

    static func encodeSealed(_ message: MigrationMessage, sequence: UInt64) -> [UInt8] {
        guard let plain = try? ControlFrame.encodedBytes(message) else { return [] }
        var buffer = [UInt8](repeating: 0, count: plain.count + ControlFrameAuthenticator.tagSize)
        let length = buffer.withUnsafeMutableBytes { raw in
            (try? ControlFrame.encode(message, into: raw, authenticator: sender, sequence: sequence)) ?? 0
        }
        return Array(buffer[0..<length])
    }

    static func violation(_ target: FuzzTarget, _ detail: String) -> FuzzPropertyViolation {
        FuzzPropertyViolation(target, detail)
    }
}
