import RdmigChannels
import RdmigTransport
import Testing

@Suite struct ControlMessageCoding {
    @Test func everyMessageKindHasASample() {
        let sampled = Set(MessageSamples.all.map(\.kind))
        #expect(sampled == Set(MigrationMessage.Kind.allCases))
    }

    @Test(arguments: MessageSamples.all)
    func everyMessageRoundtripsThroughAFrame(_ message: MigrationMessage) throws {
        let bytes = try ControlFrame.encodedBytes(message)
        let decoded = try bytes.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) }
        #expect(decoded == message)
        // The header carries the type and the exact payload length.
        let header = try bytes.withUnsafeBytes { try ControlFrameHeader.load(from: $0) }
        #expect(header.type == message.kind.rawValue)
        #expect(Int(header.payloadLength) == bytes.count - ControlFrameHeader.size)
    }

    @Test(arguments: MessageSamples.all)
    func everyTruncationOfAPayloadIsAnErrorNamingTheMessageAndField(_ message: MigrationMessage) throws {
        var writer = WireWriter(countingFor: message.wireName)
        try message.encodePayload(to: &writer)
        var payload = [UInt8](repeating: 0, count: writer.count)
        try payload.withUnsafeMutableBytes { raw in
            var writer = WireWriter(into: raw, messageName: message.wireName)
            try message.encodePayload(to: &writer)
        }
        for length in 0..<payload.count {
            let error = payload.withUnsafeBytes { raw -> WireError? in
                var reader = WireReader(UnsafeRawBufferPointer(rebasing: raw[..<length]), messageName: message.wireName)
                do throws(WireError) {
                    _ = try MigrationMessage.decode(type: message.wireType, payload: &reader)
                    try reader.finish()
                    return nil
                } catch {
                    return error
                }
            }
            guard case .truncated(let name, let field, _, _)? = error else {
                Issue.record("\(message.wireName) cut to \(length) of \(payload.count) bytes gave \(String(describing: error)), not a truncation error")
                continue
            }
            #expect(name == message.wireName)
            #expect(!field.isEmpty)
            #expect(error!.description.contains(message.wireName) && error!.description.contains(field))
        }
    }

    @Test func trailingBytesAfterTheLastFieldAreRefused() throws {
        var bytes = try ControlFrame.encodedBytes(MigrationMessage.zeroPagesApplied(.init(iteration: 1)))
        bytes += [0, 0]
        // Patch the header's length so only the payload decoding can notice.
        let length = UInt32(bytes.count - ControlFrameHeader.size)
        withUnsafeBytes(of: length.littleEndian) { bytes.replaceSubrange(8..<12, with: $0) }
        let checksum = bytes[ControlFrameHeader.size...].withUnsafeBytes { CRC32CForTests.checksum($0) }
        withUnsafeBytes(of: checksum.littleEndian) { bytes.replaceSubrange(12..<16, with: $0) }
        #expect(throws: ChannelError.malformedMessage(.trailingBytes(message: "ZERO_PAGES_APPLIED", count: 2))) {
            try bytes.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) }
        }
    }

    @Test func unknownEnumCodesAreRefusedByField() throws {
        let message = MigrationMessage.switchover(.init(iteration: 1, reason: .converged, remainingDirtyBytes: 0, deviceStopCopyBytes: 0))
        var bytes = try ControlFrame.encodedBytes(message)
        bytes[ControlFrameHeader.size + 4] = 99
        let error = try FrameEditing.decodeAfterFixingChecksum(&bytes)
        guard case .malformedMessage(.invalidValue(let name, let field, _))? = error else {
            Issue.record("expected an invalid-value error, got \(String(describing: error))")
            return
        }
        #expect(name == "SWITCHOVER")
        #expect(field == "reason")
    }

    @Test func aHostileArrayCountIsRefusedBeforeAllocating() throws {
        // A WINDOWS message claiming 2^32-1 windows in a 4-byte payload.
        var bytes = try ControlFrame.encodedBytes(MigrationMessage.windows(.init(regions: [])))
        bytes.replaceSubrange(ControlFrameHeader.size..<(ControlFrameHeader.size + 4), with: [0xFF, 0xFF, 0xFF, 0xFF])
        let error = try FrameEditing.decodeAfterFixingChecksum(&bytes)
        guard case .malformedMessage(.truncated(let name, let field, _, _))? = error else {
            Issue.record("expected a truncation error, got \(String(describing: error))")
            return
        }
        #expect(name == "WINDOWS")
        #expect(field == "regions")
    }

    @Test func invalidUTF8TextIsRefused() throws {
        var bytes = try ControlFrame.encodedBytes(MigrationMessage.abort(.init(reason: "ab")))
        bytes[ControlFrameHeader.size + 4] = 0xFF
        let error = try FrameEditing.decodeAfterFixingChecksum(&bytes)
        guard case .malformedMessage(.invalidValue("ABORT", "reason", _))? = error else {
            Issue.record("expected an invalid-value error for ABORT.reason, got \(String(describing: error))")
            return
        }
    }

    @Test func helloOfAnotherVersionGivesTheVersionError() throws {
        let hello = MigrationMessage.Hello(protocolVersion: RdmigProtocol.version + 1, role: .destination,
                                           features: [], nonce: Array(repeating: 1, count: 16), software: "rdmig next")
        let error = #expect(throws: ChannelError.self) { try hello.checkCompatible() }
        #expect(error == .versionMismatch(peer: RdmigProtocol.version + 1, local: RdmigProtocol.version))
        #expect(error?.description == "peer speaks rdmig protocol v\(RdmigProtocol.version + 1), this is v\(RdmigProtocol.version): run the same rdmig release on both hosts")
        try MigrationMessage.Hello(role: .source, features: [], nonce: Array(repeating: 1, count: 16), software: "x").checkCompatible()
    }

    /// Protocol v3 changed the chunk digests (XXH64 to XXH3): a v2 peer is refused before
    /// anything is migrated, and the message names both versions.
    @Test func aVersion2PeerIsRefusedNamingBothVersions() throws {
        #expect(RdmigProtocol.version == 3)
        let hello = MigrationMessage.Hello(protocolVersion: 2, role: .source, features: [],
                                           nonce: Array(repeating: 1, count: 16), software: "rdmig v2")
        let bytes = try ControlFrame.encodedBytes(MigrationMessage.hello(hello))
        let decoded = try bytes.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) }
        guard case .hello(let received) = decoded else {
            Issue.record("HELLO decoded as \(decoded)")
            return
        }
        let error = #expect(throws: ChannelError.self) { try received.checkCompatible() }
        #expect(error == .versionMismatch(peer: 2, local: 3))
        #expect(error?.description == "peer speaks rdmig protocol v2, this is v3: run the same rdmig release on both hosts")
    }

    /// XXH64's algorithm code (3, protocol v2) is not reused: an old DIGESTS cannot pass as XXH3.
    @Test func theXXH64DigestCodeIsNoLongerKnown() throws {
        let digests = MigrationMessage.digests(.init(entries: [.init(subject: .region, id: 0, algorithm: .xxh3ChunkTable,
                                                                     value: Array(repeating: 7, count: 8))]))
        var bytes = try ControlFrame.encodedBytes(digests)
        #expect(try bytes.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) } == digests)
        // The payload: the entry count (UInt32), then the entry's subject (1 byte), id (4), algorithm.
        let algorithmOffset = ControlFrameHeader.size + 4 + 1 + 4
        #expect(bytes[algorithmOffset] == MigrationMessage.DigestAlgorithm.xxh3ChunkTable.rawValue)
        bytes[algorithmOffset] = 3
        let error = try FrameEditing.decodeAfterFixingChecksum(&bytes)
        guard case .malformedMessage(.invalidValue(_, "digests.algorithm", let detail))? = error else {
            Issue.record("expected digests.algorithm to be refused, got \(String(describing: error))")
            return
        }
        #expect(detail == "unknown digest algorithm 3")
    }

    @Test func helloNonceOfTheWrongSizeIsRefused() throws {
        let hello = MigrationMessage.hello(.init(role: .source, features: [], nonce: [1, 2, 3], software: "x"))
        let bytes = try ControlFrame.encodedBytes(hello)
        #expect(throws: ChannelError.self) { try bytes.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) } }
    }

    @Test func aMessageLargerThanTheFrameIsRefusedWithItsSize() throws {
        let message = MigrationMessage.zeroPages(.init(iteration: 1, regionID: 0,
                                                       runs: (0..<100).map { PageRun(firstPage: UInt64($0) * 2, count: 1) }))
        var frame = [UInt8](repeating: 0, count: 512)
        let error = #expect(throws: ChannelError.self) {
            try frame.withUnsafeMutableBytes { try ControlFrame.encode(message, into: $0) }
        }
        #expect(error == .messageTooLarge(message: "ZERO_PAGES", bytes: ControlFrameHeader.size + 12 + 100 * 16, limit: 512))
    }
}
