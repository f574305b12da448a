import RdmigDeviceState

/// The VF state stream: chunk records (the transport's framing) and the ib-sw device stream
/// inside them.
enum DeviceStateTargets {
    /// The payload limit of the fuzzed decoder: small, so a mutated length crosses it often and
    /// the decoder's up-front reservation (header + limit) stays cheap per input.
    static let chunkPayloadLimit = 4096

    /// Byte 0 picks a piece size (1 to 256 bytes); the rest is a stream of records. Decoding
    /// it in one piece and in pieces of that size must give the same records and the same
    /// error (the decoder hands out whole records in place and copies split ones: two paths),
    /// and every accepted record must be the encoder's exact output for its fields.
    static func chunkRecords(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        guard let selector = input.first else { return }
        let stream = UnsafeRawBufferPointer(rebasing: input[1...])
        let whole = try decodeRecords(stream, pieceSize: max(1, stream.count))
        let pieces = try decodeRecords(stream, pieceSize: Int(selector) + 1)
        guard whole.records == pieces.records, whole.error == pieces.error else {
            throw FuzzPropertyViolation(
                .chunkRecords, "in one piece: \(whole.records.count) records then \(whole.error.map { "\($0)" } ?? "no error"); "
                    + "in \(Int(selector) + 1)-byte pieces: \(pieces.records.count) records then \(pieces.error.map { "\($0)" } ?? "no error")")
        }
        for record in whole.records {
            var encoder = ChunkRecordEncoder(firstSeq: record.header.seq, maxPayload: chunkPayloadLimit)
            var buffer = [UInt8](repeating: 0, count: ChunkRecordHeader.size + record.payload.count)
            let encoded: Int? = buffer.withUnsafeMutableBytes { raw in
                record.payload.withUnsafeBytes { payload in
                    try? encoder.encode(phase: record.header.phase, tag: record.header.tag, flags: record.header.flags,
                                        payload: payload, into: raw)
                }
            }
            let start = Int(record.offset)
            guard encoded == buffer.count, start + buffer.count <= stream.count,
                  buffer.elementsEqual(stream[start..<(start + buffer.count)]) else {
                throw FuzzPropertyViolation(.chunkRecords, "record \(record.header) at \(start) does not re-encode to its bytes")
            }
        }
    }

    struct DecodedRecord: Equatable {
        var header: ChunkRecordHeader
        var offset: UInt64
        var payload: [UInt8]
    }

    static func decodeRecords(
        _ stream: UnsafeRawBufferPointer, pieceSize: Int
    ) throws(FuzzPropertyViolation) -> (records: [DecodedRecord], error: ChunkRecordError?) {
        var decoder = ChunkRecordDecoder(maxPayload: chunkPayloadLimit)
        var records: [DecodedRecord] = []
        var start = 0
        do {
            while start < stream.count {
                let end = min(stream.count, start + pieceSize)
                try decoder.feed(UnsafeRawBufferPointer(rebasing: stream[start..<end])) { header, offset, payload in
                    records.append(DecodedRecord(header: header, offset: offset, payload: Array(payload)))
                }
                start = end
            }
            try decoder.finish()
        } catch let error as ChunkRecordError {
            return (records, error)
        } catch {
            throw FuzzPropertyViolation(.chunkRecords, "the decoder threw \(type(of: error)), not a ChunkRecordError: \(error)")
        }
        return (records, nil)
    }

    /// The VF the fuzzed stream is loaded into: tiny, so each input builds one quickly; the
    /// seeds come from a source VF of the same shape (the destination refuses another shape).
    static let ibConfiguration = IBVFConfiguration(
        shape: IBVFShape(ports: 1, gidsPerPort: 2, protectionDomains: 1, memoryRegions: 2, completionQueues: 2,
                         sharedReceiveQueues: 1, queuePairs: 2),
        seed: 3)

    /// Byte 0 picks a write size (1 to 256 bytes); the rest is an ib-sw stream written into a
    /// RESUMING VF, which then leaves RESUMING (where it checks completeness and the digest).
    /// Written in one piece or in pieces, the stream must load, or be refused, the same way.
    static func ibStream(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        guard let selector = input.first else { return }
        let stream = UnsafeRawBufferPointer(rebasing: input[1...])
        let whole = load(stream, pieceSize: max(1, stream.count))
        let pieces = load(stream, pieceSize: Int(selector) + 1)
        guard whole == pieces else {
            throw FuzzPropertyViolation(.ibStream, "written whole: \(whole); in \(Int(selector) + 1)-byte pieces: \(pieces)")
        }
    }

    enum LoadOutcome: Equatable, CustomStringConvertible {
        case loaded(DeviceStateDigest?)
        case refused(DeviceStateError)

        var description: String {
            switch self {
            case .loaded(let digest): return "loaded (\(digest.map { "\($0)" } ?? "no digest"))"
            case .refused(let error): return "refused: \(error)"
            }
        }
    }

    static func load(_ stream: UnsafeRawBufferPointer, pieceSize: Int) -> LoadOutcome {
        let device = IBSoftwareDeviceStateProvider(configuration: ibConfiguration, name: "fuzz")
        do throws(DeviceStateError) {
            try device.transition(to: .resuming)
            var start = 0
            while start < stream.count {
                let end = min(stream.count, start + pieceSize)
                try device.write(UnsafeRawBufferPointer(rebasing: stream[start..<end]))
                start = end
            }
            try device.transition(to: .stop)
            return .loaded(try device.stateDigest())
        } catch {
            return .refused(error)
        }
    }
}
