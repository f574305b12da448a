/// The loading side of one ib-sw migration session (RESUMING): parses the stream, in writes
/// of any segmentation, into fresh object tables, and on leaving RESUMING checks that every
/// object arrived and that the rebuilt tables have the source's digest.
struct IBResumeSession: Sendable {
    let device: String
    let expectedShape: IBVFShape
    /// Stream offset of the next entry's first byte.
    private(set) var offset: UInt64 = 0
    private var pending: [UInt8] = []
    private var pendingEntry: (Entry, Int)?
    private(set) var headerSeen = false
    private(set) var sourceDigest: DeviceStateDigest?
    private var present: IBObjectBitmap

    init(device: String, shape: IBVFShape) {
        self.device = device
        expectedShape = shape
        present = IBObjectBitmap(shape: shape)
        pending.reserveCapacity(IBStreamFormat.maxEntrySize)
    }

    /// Entries whose type, length and index are acceptable at this point of the stream.
    private enum Entry {
        case header
        case object(IBObjectKind, Int)
        case end
    }

    mutating func consume(_ bytes: UnsafeRawBufferPointer, into state: inout IBVFState) throws(DeviceStateError) {
        let headerSize = IBStreamFormat.entryHeaderSize
        var position = 0
        while position < bytes.count {
            if pending.isEmpty, bytes.count - position >= headerSize {
                let entryBytes = UnsafeRawBufferPointer(rebasing: bytes[position...])
                let (entry, bodyLength) = try classify(entryBytes)
                let size = headerSize + bodyLength
                if entryBytes.count >= size {
                    try apply(entry, body: UnsafeRawBufferPointer(rebasing: entryBytes[headerSize..<size]), to: &state)
                    offset += UInt64(size)
                    position += size
                    continue
                }
            }
            let need = (pendingEntry.map { headerSize + $0.1 } ?? headerSize) - pending.count
            let take = min(need, bytes.count - position)
            pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position..<(position + take)]))
            position += take
            if pendingEntry == nil, pending.count == headerSize {
                let header = pending
                pendingEntry = try header.withBytes { raw throws(DeviceStateError) in try classify(raw) }
            }
            guard let (entry, bodyLength) = pendingEntry, pending.count == headerSize + bodyLength else { continue }
            let entryBytes = pending
            try entryBytes.withBytes { raw throws(DeviceStateError) in
                try apply(entry, body: UnsafeRawBufferPointer(rebasing: raw[headerSize...]), to: &state)
            }
            offset += UInt64(pending.count)
            pending.removeAll(keepingCapacity: true)
            pendingEntry = nil
        }
    }

    /// Checks an entry header before its body is trusted.
    private func classify(_ bytes: UnsafeRawBufferPointer) throws(DeviceStateError) -> (Entry, Int) {
        var reader = ByteReader(bytes)
        let type = reader.u8()
        let reserved = reader.u8()
        let bodyLength = Int(reader.u16())
        let index = Int(reader.u32())
        func corrupt(_ reason: String) -> DeviceStateError {
            .corruptStream(device: device, offset: offset, reason: reason)
        }
        guard reserved == 0 else { throw corrupt("entry header's reserved byte is \(reserved), not 0") }
        if type == IBStreamFormat.headerType {
            guard !headerSeen else { throw corrupt("a second stream header") }
            guard bodyLength == IBStreamFormat.headerBodySize else {
                throw corrupt("stream header body is \(bodyLength) bytes, not \(IBStreamFormat.headerBodySize)")
            }
            return (.header, bodyLength)
        }
        guard headerSeen else {
            throw corrupt("entry type \(hex(type)) before the stream header (is this an ib-sw stream?)")
        }
        guard sourceDigest == nil else { throw corrupt("data after the end entry") }
        if type == IBStreamFormat.endType {
            guard bodyLength == IBStreamFormat.endBodySize else {
                throw corrupt("end entry body is \(bodyLength) bytes, not \(IBStreamFormat.endBodySize)")
            }
            return (.end, bodyLength)
        }
        guard let kind = IBObjectKind(rawValue: type) else { throw corrupt("unknown entry type \(hex(type))") }
        guard bodyLength == kind.bodySize else {
            throw corrupt("\(kind) entry body is \(bodyLength) bytes, not \(kind.bodySize)")
        }
        guard index < expectedShape.count(of: kind) else {
            throw corrupt("\(kind) index \(index) is outside the table of \(expectedShape.count(of: kind))")
        }
        return (.object(kind, index), bodyLength)
    }

    private mutating func apply(
        _ entry: Entry, body: UnsafeRawBufferPointer, to state: inout IBVFState
    ) throws(DeviceStateError) {
        switch entry {
        case .header:
            switch IBStreamFormat.parseStreamHeader(body) {
            case .failure(let error):
                throw .corruptStream(device: device, offset: offset, reason: error.reason)
            case .success(let shape):
                guard shape == expectedShape else {
                    throw .incompatibleDevice(device: device, reason: "source VF has \(shape), this one has \(expectedShape)")
                }
            }
            headerSeen = true
            // The uAPI lets a driver reset the device's state for RESUMING; the tables are
            // rebuilt from the stream alone.
            state = IBVFState(zeroed: expectedShape)
        case .object(let kind, let index):
            do {
                try state.decodeObject(kind, index, from: body)
            } catch {
                throw .corruptStream(
                    device: device, offset: offset,
                    reason: "\(kind) #\(index): field \(error.field) holds invalid value \(error.value)")
            }
            present.insert(kind, index)
        case .end:
            sourceDigest = DeviceStateDigest(encoded: UnsafeRawBufferPointer(body))
        }
    }

    /// Why the loaded state cannot be used, or nil when it is complete and matches the source.
    func rejection(of state: IBVFState) -> String? {
        if !pending.isEmpty {
            return "the stream stops inside an entry at byte \(offset) (\(pending.count) bytes of it arrived)"
        }
        guard headerSeen else { return "no ib-sw stream header arrived: nothing was loaded" }
        let total = expectedShape.objectCount
        if present.total < total {
            let first = present.firstMissing(shape: expectedShape, limit: 5).map { "\($0.0) #\($0.1)" }
            return "\(total - present.total) of \(total) objects never arrived (first: \(first.joined(separator: ", ")))"
        }
        guard let sourceDigest else {
            return "the stream has no end entry: the source's stop-copy data did not arrive completely"
        }
        let rebuilt = state.digest()
        if rebuilt != sourceDigest {
            return "rebuilt state (\(rebuilt)) does not match the source's (\(sourceDigest))"
        }
        return nil
    }
}
