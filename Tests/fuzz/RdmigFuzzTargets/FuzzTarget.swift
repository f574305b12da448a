/// The wire decoders rdmig runs on bytes from a peer (or from QEMU), one fuzz target each.
/// Every target's body lives here, once: libFuzzer calls it through `rdmig-fuzz`
/// (Tests/fuzz/run.sh) and the short run in `swift test` (RdmigFuzzTests) calls the same
/// body over the committed corpus and a few thousand mutations of it.
///
/// A body returns normally for any input the decoder accepts or refuses with its own error;
/// it throws `FuzzPropertyViolation` when the decoder broke a promise (re-encoding differs,
/// piecewise and whole decoding disagree, an error of the wrong type). A crash or an
/// out-of-bounds access (ASan) is a finding too.
package enum FuzzTarget: String, CaseIterable, Sendable {
    /// `ControlFrame.decode` of raw bytes as a migration message: magic, version, length,
    /// CRC-32C, then the payload.
    case controlFrame = "control-frame"
    /// The payload decoders behind a valid header: the input is a type byte and a payload,
    /// the body frames it (length and CRC filled in) so mutations reach every message's fields;
    /// type 0 is the router's CHANNEL_SETUP.
    case controlMessage = "control-message"
    /// `ControlFrame.decode` with a session's authenticator: raw frames (MAC checked before
    /// anything else) and, with the MAC appended by the body, the same payloads as above.
    case controlFrameAuthenticated = "control-frame-authenticated"
    /// `ChunkRecordDecoder`: the VF state stream's records, fed whole and in pieces.
    case chunkRecords = "chunk-records"
    /// The ib-sw VF state stream a destination VF loads (`IBSoftwareDeviceStateProvider.write`).
    case ibStream = "ib-stream"
    /// The `tcp` backend's 32-byte frame header and 16-byte preamble.
    case tcpFrame = "tcp-frame"
    /// `QMPLineFramer`: QEMU's bytes split into lines, fed whole and in pieces.
    case qmpFramer = "qmp-framer"
    /// One QMP message: JSON parsing (`QMPValue`), then what rdmig reads from it (greeting,
    /// events and their timestamps, `query-migrate` replies, errors).
    case qmpMessage = "qmp-message"

    /// Runs the target's body on one input.
    package func run(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        switch self {
        case .controlFrame: try ControlFrameTargets.frame(input)
        case .controlMessage: try ControlFrameTargets.message(input)
        case .controlFrameAuthenticated: try ControlFrameTargets.authenticated(input)
        case .chunkRecords: try DeviceStateTargets.chunkRecords(input)
        case .ibStream: try DeviceStateTargets.ibStream(input)
        case .tcpFrame: try TCPTargets.frame(input)
        case .qmpFramer: try QMPTargets.framer(input)
        case .qmpMessage: try QMPTargets.message(input)
        }
    }

    package func run(_ input: [UInt8]) throws(FuzzPropertyViolation) {
        let result: Result<Void, FuzzPropertyViolation> = input.withUnsafeBytes { raw in
            do throws(FuzzPropertyViolation) { try run(raw); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// Real encodings to start from (the committed corpus is these, written by
    /// `rdmig-fuzz seeds`).
    package var seeds: [[UInt8]] {
        switch self {
        case .controlFrame: return FuzzSeeds.controlFrames
        case .controlMessage: return FuzzSeeds.controlMessages
        case .controlFrameAuthenticated: return FuzzSeeds.authenticatedFrames
        case .chunkRecords: return FuzzSeeds.chunkRecordStreams
        case .ibStream: return FuzzSeeds.ibStreams
        case .tcpFrame: return FuzzSeeds.tcpFrames
        case .qmpFramer: return FuzzSeeds.qmpByteStreams
        case .qmpMessage: return FuzzSeeds.qmpMessages
        }
    }
}

/// A decoder broke a promise on one input; `detail` says which.
package struct FuzzPropertyViolation: Error, CustomStringConvertible {
    package let target: FuzzTarget
    package let detail: String

    package init(_ target: FuzzTarget, _ detail: String) {
        self.target = target
        self.detail = detail
    }

    package var description: String { "\(target.rawValue): \(detail)" }
}

/// Hex of the first bytes, for violation messages.
func hexPrefix(_ bytes: some Collection<UInt8>, limit: Int = 48) -> String {
    let shown = bytes.prefix(limit).map { byte -> String in
        let digits = String(byte, radix: 16)
        return digits.count == 1 ? "0" + digits : digits
    }.joined(separator: " ")
    return bytes.count > limit ? shown + " … (\(bytes.count) bytes)" : shown
}
