import RdmigSystem
import Testing

@testable import RdmigDeviceState

/// Encodes `payloads` as consecutive records into one byte stream.
func recordStream(
    _ payloads: [(ChunkPhase, UInt32, ChunkRecordFlags, [UInt8])], firstSeq: UInt64 = 0
) throws -> [UInt8] {
    var encoder = ChunkRecordEncoder(firstSeq: firstSeq)
    var stream: [UInt8] = []
    for (phase, tag, flags, payload) in payloads {
        var buffer = [UInt8](repeating: 0, count: ChunkRecordHeader.size + payload.count)
        let length = try buffer.withUnsafeMutableBytes { out in
            try payload.withUnsafeBytes { try encoder.encode(phase: phase, tag: tag, flags: flags, payload: $0, into: out) }
        }
        stream += buffer[0..<length]
    }
    return stream
}

struct DecodedRecord: Equatable {
    var header: ChunkRecordHeader
    var offset: UInt64
    var payload: [UInt8]
}

/// Feeds `stream` to a decoder in pieces of `piece` bytes and collects the records.
func decodeAll(_ stream: [UInt8], piece: Int = Int.max, maxPayload: Int = ChunkRecordHeader.defaultMaxPayload)
    throws -> [DecodedRecord]
{
    var decoder = ChunkRecordDecoder(maxPayload: maxPayload)
    var records: [DecodedRecord] = []
    var start = 0
    while start < stream.count {
        let end = min(stream.count, start + min(piece, stream.count))
        try stream[start..<end].withUnsafeBytes { bytes in
            try decoder.feed(bytes) { header, offset, payload in
                records.append(DecodedRecord(header: header, offset: offset, payload: Array(payload)))
            }
        }
        start = end
    }
    try decoder.finish()
    return records
}

@Suite struct ChunkRecords {
    let sample: [(ChunkPhase, UInt32, ChunkRecordFlags, [UInt8])] = [
        (.precopy, 7, [], Array(0..<200)),
        (.precopy, 7, .initialDataComplete, []),
        (.precopy, 9, [], [UInt8](repeating: 0xAB, count: 5000)),
        (.stopCopy, 7, [], Array(repeating: 1, count: 3)),
        (.stopCopy, 7, .endOfPhase, []),
        (.stopCopy, 9, .endOfPhase, [42]),
    ]

    @Test func headerLayoutIsTheDocumentedLittleEndianOne() throws {
        let stream = try recordStream([(.stopCopy, 0x0102_0304, [.endOfPhase, .initialDataComplete], [1, 2, 3])], firstSeq: 5)
        #expect(stream.count == 35)
        #expect(Array(stream[0..<4]) == Array("RDVS".utf8))
        #expect(Array(stream[4..<8]) == [1, 0, 2, 3])
        #expect(Array(stream[8..<16]) == [5, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(stream[16..<20]) == [4, 3, 2, 1])
        #expect(Array(stream[20..<24]) == [3, 0, 0, 0])
        let payloadCRC = CRC32C.checksum([1, 2, 3] as [UInt8])
        #expect(Array(stream[24..<28]) == withUnsafeBytes(of: payloadCRC.littleEndian) { Array($0) })
        let headerCRC = CRC32C.checksum(stream[0..<28])
        #expect(Array(stream[28..<32]) == withUnsafeBytes(of: headerCRC.littleEndian) { Array($0) })
        #expect(Array(stream[32...]) == [1, 2, 3])
    }

    @Test func recordsRoundTripWhateverTheSegmentation() throws {
        let stream = try recordStream(sample)
        for piece in [Int.max, 1, 7, 31, 32, 33, 1000, 4096] {
            let records = try decodeAll(stream, piece: piece)
            #expect(records.count == sample.count, "piece \(piece)")
            var offset: UInt64 = 0
            for (index, record) in records.enumerated() {
                #expect(record.header.seq == UInt64(index))
                #expect(record.header.phase == sample[index].0)
                #expect(record.header.tag == sample[index].1)
                #expect(record.header.flags == sample[index].2)
                #expect(record.payload == sample[index].3)
                #expect(record.offset == offset)
                offset += UInt64(ChunkRecordHeader.size + record.payload.count)
            }
        }
    }

    @Test func sealFramesAPayloadAlreadyInTheSlotWithoutCopying() throws {
        var encoder = ChunkRecordEncoder(maxPayload: 64)
        var slot = [UInt8](repeating: 0, count: 128)
        let length = try slot.withUnsafeMutableBytes { raw in
            let area = encoder.payloadArea(of: raw)
            #expect(area.count == 64)
            for index in 0..<10 { area[index] = UInt8(index) }
            return try encoder.seal(phase: .precopy, tag: 1, payloadLength: 10, in: raw)
        }
        #expect(length == 42)
        #expect(encoder.nextSeq == 1)
        let records = try decodeAll(Array(slot[0..<length]))
        #expect(records.map(\.payload) == [Array(0..<10)])
        #expect(throws: ChunkRecordError.bufferTooSmall(needed: 32 + 65, available: 96)) {
            try slot.withUnsafeMutableBytes { try encoder.seal(phase: .precopy, tag: 1, payloadLength: 65, in: $0) }
        }
    }

    @Test func garbageIsRefusedAtItsOffset() throws {
        var stream = try recordStream(Array(sample[0..<2]))
        let second = 32 + 200
        stream[second] = 0x58
        #expect(throws: ChunkRecordError.badMagic(offset: UInt64(second), found: 0x5356_4458)) { try decodeAll(stream) }
        let noise = (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        #expect(throws: ChunkRecordError.self) { try decodeAll(noise) }
    }

    @Test func aNewerVersionIsRefusedWithBothVersionsNamed() throws {
        var stream = try recordStream([sample[0]])
        stream[4] = 2
        let error = #expect(throws: ChunkRecordError.self) { try decodeAll(stream) }
        #expect(error == .unsupportedVersion(offset: 0, found: 2, supported: 1))
        #expect(error?.description.contains("same rdmig version") == true)
    }

    @Test func aCorruptHeaderIsRefusedBeforeItsLengthIsTrusted() throws {
        var stream = try recordStream([sample[0]])
        stream[21] = 0xFF  // length field: would claim ~16 MiB
        let error = #expect(throws: ChunkRecordError.self) { try decodeAll(stream) }
        guard case .headerChecksumMismatch(offset: 0, _, _) = error else {
            Issue.record("expected a header checksum error, got \(String(describing: error))")
            return
        }
    }

    @Test func aCorruptPayloadByteIsRefusedNamingTheRecord() throws {
        var stream = try recordStream(sample)
        let thirdPayload = (32 + 200) + 32 + 32 + 1234
        stream[thirdPayload] ^= 0x01
        let error = #expect(throws: ChunkRecordError.self) { try decodeAll(stream, piece: 1000) }
        guard case .payloadChecksumMismatch(seq: 2, offset: 264, _, _) = error else {
            Issue.record("expected record 2 at 264 to fail its payload crc, got \(String(describing: error))")
            return
        }
        #expect(error!.description.contains("record 2"))
    }

    @Test func aDroppedRecordIsRefusedAsOutOfOrder() throws {
        let full = try recordStream(sample)
        let firstLength = 32 + 200
        let secondLength = 32
        let dropped = Array(full[0..<firstLength] + full[(firstLength + secondLength)...])
        #expect(throws: ChunkRecordError.outOfOrder(seq: 2, expected: 1, offset: UInt64(firstLength))) {
            try decodeAll(dropped)
        }
        let replayed = Array(full[0..<firstLength] + full[0..<firstLength])
        let error = #expect(throws: ChunkRecordError.self) { try decodeAll(replayed, piece: 5) }
        #expect(error == .outOfOrder(seq: 0, expected: 1, offset: UInt64(firstLength)))
        #expect(error?.description.contains("duplicate") == true)
    }

    @Test func aTruncatedStreamIsReportedAtFinish() throws {
        let stream = try recordStream(Array(sample[0..<3]))
        let cut = Array(stream.dropLast(10))
        #expect(throws: ChunkRecordError.truncated(seq: 2, offset: 264, have: 32 + 4990, need: 32 + 5000)) {
            try decodeAll(cut, piece: 300)
        }
        let headerOnly = Array(stream[0..<(232 + 20)])
        #expect(throws: ChunkRecordError.truncated(seq: nil, offset: 232, have: 20, need: 32)) { try decodeAll(headerOnly) }
    }

    @Test func precopyAfterStopCopyIsRefused() throws {
        let stream = try recordStream([(.stopCopy, 1, [], [1]), (.precopy, 1, [], [2])])
        #expect(throws: ChunkRecordError.phaseWentBackwards(seq: 1, offset: 33)) { try decodeAll(stream) }
    }

    @Test func oversizedRecordsAndUnknownFlagsAreRefused() throws {
        let big = try recordStream([(.precopy, 1, [], [UInt8](repeating: 0, count: 2000))])
        #expect(throws: ChunkRecordError.payloadTooLarge(seq: 0, offset: 0, length: 2000, limit: 1024)) {
            try decodeAll(big, maxPayload: 1024)
        }
        var flagged = try recordStream([(.precopy, 1, [], [1])])
        flagged[7] = 0x80
        let crc = CRC32C.checksum(flagged[0..<28])
        withUnsafeBytes(of: crc.littleEndian) { for index in 0..<4 { flagged[28 + index] = $0[index] } }
        #expect(throws: ChunkRecordError.unknownFlags(seq: 0, offset: 0, raw: 0x80)) { try decodeAll(flagged) }
    }

    @Test func aDecoderStaysFailedAfterABadRecord() throws {
        var stream = try recordStream(Array(sample[0..<2]))
        stream[40] ^= 0xFF
        var decoder = ChunkRecordDecoder()
        var delivered = 0
        for _ in 0..<2 {
            #expect(throws: ChunkRecordError.self) {
                try stream.withUnsafeBytes { try decoder.feed($0) { _, _, _ in delivered += 1 } }
            }
        }
        #expect(delivered == 0)
    }
}

/// Record fields a peer controls, at their extremes.
@Suite struct ChunkRecordExtremes {
    /// One header (any field values, checksums made valid) followed by `payload`.
    func record(seq: UInt64, length: UInt32, payload: [UInt8] = []) -> [UInt8] {
        let header = ChunkRecordHeader(seq: seq, phase: .precopy, tag: .max, flags: [], length: length,
                                       crc32c: CRC32C.checksum(payload))
        var bytes = [UInt8](repeating: 0, count: ChunkRecordHeader.size)
        bytes.withUnsafeMutableBytes { header.encode(into: $0) }
        return bytes + payload
    }

    func feed(_ decoder: inout ChunkRecordDecoder, _ bytes: [UInt8]) throws -> [ChunkRecordHeader] {
        var headers: [ChunkRecordHeader] = []
        try bytes.withUnsafeBytes { raw in try decoder.feed(raw) { header, _, _ in headers.append(header) } }
        return headers
    }

    @Test func theLastSequenceNumberIsAcceptedAndTheNextOneWrapsInsteadOfTrapping() throws {
        var decoder = ChunkRecordDecoder(firstSeq: .max)
        #expect(try feed(&decoder, record(seq: .max, length: 0)).map(\.seq) == [.max])
        #expect(decoder.nextSeq == 0)
        #expect(try feed(&decoder, record(seq: 0, length: 1, payload: [7])).map(\.seq) == [0])
    }

    @Test func aLengthOfU32MaxIsRefusedBeforeAnythingIsBuffered() throws {
        var decoder = ChunkRecordDecoder()
        #expect(throws: ChunkRecordError.payloadTooLarge(seq: 0, offset: 0, length: .max, limit: ChunkRecordHeader.defaultMaxPayload)) {
            _ = try feed(&decoder, record(seq: 0, length: .max))
        }
        #expect(!decoder.hasPartialRecord)
    }

    @Test func aSequenceNumberFarAheadIsOutOfOrderNotArithmetic() throws {
        var decoder = ChunkRecordDecoder()
        #expect(throws: ChunkRecordError.outOfOrder(seq: .max, expected: 0, offset: 0)) {
            _ = try feed(&decoder, record(seq: .max, length: 0))
        }
    }
}
