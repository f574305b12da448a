/// Destination side of the device-state stream: decodes chunk records (any segmentation)
/// and writes each payload into the provider its tag names, in order.
///
/// It tracks per device whether the initial pre-copy data has been loaded (when the
/// provider asks for a switchover ack, send it once `initialDataLoaded(tag:)` is true) and
/// whether the stop-copy stream has ended.
public struct DeviceStateReceiver {
    private var decoder: ChunkRecordDecoder
    private let providers: [UInt32: any DeviceStateProvider]
    private var initialLoaded: Set<UInt32> = []
    private var ended: Set<UInt32> = []
    public private(set) var precopyBytes: UInt64 = 0
    public private(set) var stopCopyBytes: UInt64 = 0

    public init(providers: [UInt32: any DeviceStateProvider], maxPayload: Int = ChunkRecordHeader.defaultMaxPayload) {
        self.providers = providers
        decoder = ChunkRecordDecoder(maxPayload: maxPayload)
    }

    /// Consumes stream bytes. Throws `ChunkRecordError` for a bad record and
    /// `DeviceStateError` when a provider refuses its data.
    public mutating func receive(_ bytes: UnsafeRawBufferPointer) throws {
        let providers = self.providers
        var initialLoaded = self.initialLoaded
        var ended = self.ended
        var precopy: UInt64 = 0
        var stopCopy: UInt64 = 0
        defer {
            self.initialLoaded = initialLoaded
            self.ended = ended
            precopyBytes += precopy
            stopCopyBytes += stopCopy
        }
        try decoder.feed(bytes) { header, offset, payload in
            guard let provider = providers[header.tag] else {
                throw ChunkRecordError.unknownTag(seq: header.seq, offset: offset, tag: header.tag)
            }
            guard !ended.contains(header.tag) else {
                throw ChunkRecordError.recordAfterEnd(seq: header.seq, offset: offset, tag: header.tag)
            }
            if payload.count > 0 { try provider.write(payload) }
            if header.phase == .precopy { precopy += UInt64(payload.count) } else { stopCopy += UInt64(payload.count) }
            if header.flags.contains(.initialDataComplete) { initialLoaded.insert(header.tag) }
            if header.phase == .stopCopy && header.flags.contains(.endOfPhase) { ended.insert(header.tag) }
        }
    }

    /// The device's initial pre-copy data has been written into it.
    public func initialDataLoaded(tag: UInt32) -> Bool { initialLoaded.contains(tag) }

    /// The device's stop-copy stream has ended.
    public func stopCopyComplete(tag: UInt32) -> Bool { ended.contains(tag) }

    public var allStopCopyComplete: Bool { providers.keys.allSatisfy { ended.contains($0) } }

    /// At the end of the stream: throws when a record is incomplete.
    public func finish() throws(ChunkRecordError) { try decoder.finish() }
}
