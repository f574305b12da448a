import RdmigSystem

/// Frames device-state pieces as chunk records in buffers the caller owns (for example a
/// byte-stream channel's send slot): no allocation per record.
///
/// Zero-copy use: let the provider read straight into `payloadArea(of: slot)`, then `seal`
/// writes the header in front of it.
public struct ChunkRecordEncoder: Sendable {
    /// Sequence number the next record gets.
    public private(set) var nextSeq: UInt64
    public let maxPayload: Int

    public init(firstSeq: UInt64 = 0, maxPayload: Int = ChunkRecordHeader.defaultMaxPayload) {
        precondition(maxPayload > 0 && maxPayload <= Int(UInt32.max), "maxPayload must fit a u32")
        self.nextSeq = firstSeq
        self.maxPayload = maxPayload
    }

    /// Where the payload goes in a record buffer: after the 32-byte header, at most
    /// `maxPayload` bytes.
    public func payloadArea(of buffer: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawBufferPointer {
        guard buffer.count > ChunkRecordHeader.size else { return UnsafeMutableRawBufferPointer(start: nil, count: 0) }
        let end = min(buffer.count, ChunkRecordHeader.size + maxPayload)
        return UnsafeMutableRawBufferPointer(rebasing: buffer[ChunkRecordHeader.size..<end])
    }

    /// Writes the header for the `payloadLength` bytes already at `payloadArea(of: buffer)`;
    /// returns the record's total length.
    @discardableResult
    public mutating func seal(
        phase: ChunkPhase, tag: UInt32, flags: ChunkRecordFlags = [], payloadLength: Int,
        in buffer: UnsafeMutableRawBufferPointer
    ) throws(ChunkRecordError) -> Int {
        let total = ChunkRecordHeader.size + payloadLength
        guard payloadLength >= 0, payloadLength <= maxPayload, total <= buffer.count else {
            throw .bufferTooSmall(needed: total, available: min(buffer.count, ChunkRecordHeader.size + maxPayload))
        }
        let payload = UnsafeRawBufferPointer(rebasing: buffer[ChunkRecordHeader.size..<total])
        let header = ChunkRecordHeader(
            seq: nextSeq, phase: phase, tag: tag, flags: flags, length: UInt32(payloadLength),
            crc32c: CRC32C.checksum(payload))
        header.encode(into: buffer)
        nextSeq += 1
        return total
    }

    /// Copies `payload` behind a new header into `buffer`; returns the record's length.
    @discardableResult
    public mutating func encode(
        phase: ChunkPhase, tag: UInt32, flags: ChunkRecordFlags = [], payload: UnsafeRawBufferPointer,
        into buffer: UnsafeMutableRawBufferPointer
    ) throws(ChunkRecordError) -> Int {
        let total = ChunkRecordHeader.size + payload.count
        guard payload.count <= maxPayload, total <= buffer.count else {
            throw .bufferTooSmall(needed: total, available: buffer.count)
        }
        if let source = payload.baseAddress, payload.count > 0 {
            buffer.baseAddress!.advanced(by: ChunkRecordHeader.size).copyMemory(from: source, byteCount: payload.count)
        }
        return try seal(phase: phase, tag: tag, flags: flags, payloadLength: payload.count, in: buffer)
    }
}
