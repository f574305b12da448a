import RdmigSystem

/// Reads chunk records back from a byte stream delivered in pieces of any size, checking
/// each record: magic, version, header and payload checksums, payload limit, consecutive
/// seq, and that precopy never follows stopcopy. Whole records inside a piece are handed out
/// in place; only a record split across pieces is copied (into one buffer reserved up
/// front). After a refused record the decoder stays failed: the stream is out of step.
public struct ChunkRecordDecoder {
    public let maxPayload: Int
    /// Bytes of stream consumed so far.
    public private(set) var streamOffset: UInt64 = 0
    /// The seq the next record must carry.
    public private(set) var nextSeq: UInt64
    public private(set) var sawStopCopy = false
    private var partial: [UInt8]
    private var partialHeader: ChunkRecordHeader?
    private var partialStart: UInt64 = 0
    private var failure: ChunkRecordError?

    public init(firstSeq: UInt64 = 0, maxPayload: Int = ChunkRecordHeader.defaultMaxPayload) {
        self.maxPayload = maxPayload
        self.nextSeq = firstSeq
        self.partial = []
        self.partial.reserveCapacity(ChunkRecordHeader.size + maxPayload)
    }

    /// Whether a record is half received.
    public var hasPartialRecord: Bool { !partial.isEmpty }

    /// Decodes the records in `bytes` (continuing any record split at the end of the last
    /// piece) and calls `onRecord` for each, in order, with the record's header, the stream
    /// offset where it starts, and its payload (valid only during the call). Throws
    /// `ChunkRecordError` for a bad record, or what `onRecord` throws.
    public mutating func feed(
        _ bytes: UnsafeRawBufferPointer,
        _ onRecord: (ChunkRecordHeader, UInt64, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        if let failure { throw failure }
        do {
            try decode(bytes, onRecord)
        } catch let error as ChunkRecordError {
            failure = error
            throw error
        }
    }

    /// At the end of the stream: throws `truncated` when a record is incomplete.
    public func finish() throws(ChunkRecordError) {
        if let failure { throw failure }
        guard partial.isEmpty else {
            let need = partialHeader.map { ChunkRecordHeader.size + Int($0.length) } ?? ChunkRecordHeader.size
            throw .truncated(seq: partialHeader?.seq, offset: partialStart, have: partial.count, need: need)
        }
    }

    private mutating func decode(
        _ bytes: UnsafeRawBufferPointer,
        _ onRecord: (ChunkRecordHeader, UInt64, UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let headerSize = ChunkRecordHeader.size
        var position = 0
        while position < bytes.count {
            if partial.isEmpty {
                let available = bytes.count - position
                partialStart = streamOffset
                if available >= headerSize {
                    let start = UnsafeRawBufferPointer(rebasing: bytes[position...])
                    let header = try ChunkRecordHeader.parse(start, offset: streamOffset, maxPayload: maxPayload)
                    try accept(header, offset: streamOffset)
                    let total = headerSize + Int(header.length)
                    if available >= total {
                        let payload = UnsafeRawBufferPointer(rebasing: bytes[(position + headerSize)..<(position + total)])
                        let offset = streamOffset
                        try Self.verify(header, payload, offset: offset)
                        streamOffset += UInt64(total)
                        position += total
                        try onRecord(header, offset, payload)
                        continue
                    }
                    partialHeader = header
                }
            }
            let need = (partialHeader.map { headerSize + Int($0.length) } ?? headerSize) - partial.count
            let take = min(need, bytes.count - position)
            partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position..<(position + take)]))
            position += take
            streamOffset += UInt64(take)
            if partialHeader == nil, partial.count == headerSize {
                let offset = partialStart
                let limit = maxPayload
                let header = try partial.withUnsafeBytes { raw throws(ChunkRecordError) in
                    try ChunkRecordHeader.parse(raw, offset: offset, maxPayload: limit)
                }
                try accept(header, offset: offset)
                partialHeader = header
            }
            if let header = partialHeader, partial.count == headerSize + Int(header.length) {
                let offset = partialStart
                try partial.withUnsafeBytes { raw in
                    let payload = UnsafeRawBufferPointer(rebasing: raw[headerSize...])
                    try Self.verify(header, payload, offset: offset)
                    try onRecord(header, offset, payload)
                }
                partialHeader = nil
                partial.removeAll(keepingCapacity: true)
            }
        }
    }

    /// Stream-order rules, checked as soon as a header is known.
    private mutating func accept(_ header: ChunkRecordHeader, offset: UInt64) throws(ChunkRecordError) {
        guard header.seq == nextSeq else {
            throw .outOfOrder(seq: header.seq, expected: nextSeq, offset: offset)
        }
        if header.phase == .precopy && sawStopCopy {
            throw .phaseWentBackwards(seq: header.seq, offset: offset)
        }
        // Wrapping is harmless: only a decoder started near 2^64 (firstSeq) ever gets there,
        // and then the next record must carry seq 0.
        nextSeq &+= 1
        if header.phase == .stopCopy { sawStopCopy = true }
    }

    private static func verify(
        _ header: ChunkRecordHeader, _ payload: UnsafeRawBufferPointer, offset: UInt64
    ) throws(ChunkRecordError) {
        let computed = CRC32C.checksum(payload)
        guard computed == header.crc32c else {
            throw .payloadChecksumMismatch(seq: header.seq, offset: offset, stored: header.crc32c, computed: computed)
        }
    }
}
