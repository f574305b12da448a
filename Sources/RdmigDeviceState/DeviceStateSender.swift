/// Source side of one device's state stream: reads the provider straight into chunk
/// records in the caller's buffers (a channel's send slots), with no copy and no allocation.
///
/// Pre-copy: call `nextPrecopyRecord` while the guest runs; nil means the device has nothing
/// pending just now (the data fd's ENOMSG). The record that completes the initial data
/// carries `initialDataComplete`, the destination's cue for the switchover ack.
/// Stop-copy: after `enterStopCopy()`, call `nextStopCopyRecord` until it returns nil; the
/// last record (possibly empty) carries `endOfPhase`.
public struct DeviceStateSender {
    public let provider: any DeviceStateProvider
    public let tag: UInt32
    public private(set) var precopyBytes: UInt64 = 0
    public private(set) var stopCopyBytes: UInt64 = 0
    public private(set) var initialDataComplete = false
    public private(set) var stopCopyFinished = false

    public init(provider: any DeviceStateProvider, tag: UInt32) {
        self.provider = provider
        self.tag = tag
    }

    /// Writes the next pre-copy record into `buffer`; returns its length, or nil when the
    /// device has nothing to send right now.
    public mutating func nextPrecopyRecord(
        encoder: inout ChunkRecordEncoder, into buffer: UnsafeMutableRawBufferPointer
    ) throws -> Int? {
        let area = encoder.payloadArea(of: buffer)
        guard area.count > 0 else {
            throw ChunkRecordError.bufferTooSmall(needed: ChunkRecordHeader.size + 1, available: buffer.count)
        }
        let count: Int
        switch try provider.read(into: area) {
        case .bytes(let n): count = n
        case .nothingPending, .endOfStream: count = 0
        }
        var flags: ChunkRecordFlags = []
        if !initialDataComplete, try provider.precopyInfo().initialBytes == 0 {
            initialDataComplete = true
            flags.insert(.initialDataComplete)
        }
        // An empty record is worth sending only to carry the initial-data flag.
        guard count > 0 || !flags.isEmpty else { return nil }
        precopyBytes += UInt64(count)
        return try encoder.seal(phase: .precopy, tag: tag, flags: flags, payloadLength: count, in: buffer)
    }

    /// Writes the next stop-copy record into `buffer`; returns its length, or nil once the
    /// record with `endOfPhase` has been produced.
    public mutating func nextStopCopyRecord(
        encoder: inout ChunkRecordEncoder, into buffer: UnsafeMutableRawBufferPointer
    ) throws -> Int? {
        guard !stopCopyFinished else { return nil }
        let area = encoder.payloadArea(of: buffer)
        guard area.count > 0 else {
            throw ChunkRecordError.bufferTooSmall(needed: ChunkRecordHeader.size + 1, available: buffer.count)
        }
        switch try provider.read(into: area) {
        case .bytes(let count):
            stopCopyBytes += UInt64(count)
            return try encoder.seal(phase: .stopCopy, tag: tag, payloadLength: count, in: buffer)
        case .endOfStream, .nothingPending:
            // In STOP_COPY the uAPI never reports ENOMSG; treat it as the end regardless.
            stopCopyFinished = true
            return try encoder.seal(phase: .stopCopy, tag: tag, flags: .endOfPhase, payloadLength: 0, in: buffer)
        }
    }
}
