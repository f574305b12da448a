/// The saving side of one ib-sw migration session (the PRE_COPY/STOP_COPY "data fd"):
/// turns the object tables into the stream, in reads of any size.
///
/// Entries are written whole when they fit; an entry that does not fit the rest of the
/// caller's buffer is encoded into `staged` and handed out across reads, so callers may
/// read in pieces of any size (the uAPI promises nothing about read sizes).
struct IBSourceSession: Sendable {
    var tracker: IBDirtyTracker
    var headerSent = false
    /// In STOP_COPY: the guest is paused, so what remains is final and the end entry follows.
    var stopped = false
    var endSent = false
    private var staged: [UInt8] = []
    private var stagedOffset = 0
    private var stagedIsInitial = true

    init(shape: IBVFShape, stopped: Bool) {
        tracker = IBDirtyTracker(shape: shape)
        self.stopped = stopped
        staged.reserveCapacity(IBStreamFormat.maxEntrySize)
    }

    private var stagedRemaining: Int { staged.count - stagedOffset }

    var precopyInfo: PrecopyInfo {
        let initial = (headerSent ? 0 : IBStreamFormat.headerEntrySize) + tracker.remainingInitialBytes
            + (stagedIsInitial ? stagedRemaining : 0)
        let dirty = tracker.dirtyBytes + (stagedIsInitial ? 0 : stagedRemaining)
        return PrecopyInfo(initialBytes: UInt64(initial), dirtyBytes: UInt64(dirty))
    }

    /// Bytes still to come if STOP_COPY started now (MIG_DATA_SIZE).
    var remainingBytes: UInt64 {
        let info = precopyInfo
        return info.initialBytes + info.dirtyBytes + UInt64(endSent ? 0 : IBStreamFormat.endEntrySize)
    }

    mutating func fill(_ buffer: UnsafeMutableRawBufferPointer, state: IBVFState) -> DeviceStateRead {
        guard buffer.count > 0 else { return .bytes(0) }
        var written = 0
        if stagedRemaining > 0 {
            let count = min(stagedRemaining, buffer.count)
            staged.withUnsafeBytes { raw in
                buffer.baseAddress!.copyMemory(from: raw.baseAddress! + stagedOffset, byteCount: count)
            }
            stagedOffset += count
            written = count
        }
        if written < buffer.count, !headerSent {
            headerSent = true
            emit(IBStreamFormat.headerEntrySize, initial: true, into: buffer, at: &written) { writer in
                IBStreamFormat.writeStreamHeader(state.shape, into: &writer)
            }
        }
        while written < buffer.count, !tracker.initialComplete {
            let (kind, index) = tracker.locate(tracker.initialCursor)
            tracker.initialCursor += 1
            emit(IBStreamFormat.entrySize(kind), initial: true, into: buffer, at: &written) { writer in
                state.encodeEntry(kind, index, into: &writer)
            }
        }
        if written < buffer.count, tracker.initialComplete {
            // Moved out for the walk (emit needs self), not copied: no allocation per read.
            var dirty = IBObjectBitmap()
            swap(&dirty, &tracker.dirty)
            dirty.removeEach { kind, index in
                emit(IBStreamFormat.entrySize(kind), initial: false, into: buffer, at: &written) { writer in
                    state.encodeEntry(kind, index, into: &writer)
                }
                return written < buffer.count
            }
            swap(&dirty, &tracker.dirty)
        }
        if written < buffer.count, stopped, !endSent, tracker.initialComplete, tracker.dirty.total == 0 {
            endSent = true
            let digest = state.digest().encoded
            emit(IBStreamFormat.endEntrySize, initial: false, into: buffer, at: &written) { writer in
                IBStreamFormat.writeEntryHeader(
                    type: IBStreamFormat.endType, bodyLength: IBStreamFormat.endBodySize, index: 0, into: &writer)
                for byte in digest { writer.u8(byte) }
            }
        }
        if written > 0 { return .bytes(written) }
        return stopped ? .endOfStream : .nothingPending
    }

    /// Writes one entry of `size` bytes at `offset`, or stages it and hands out what fits.
    private mutating func emit(
        _ size: Int, initial: Bool, into buffer: UnsafeMutableRawBufferPointer, at offset: inout Int,
        _ write: (inout ByteWriter) -> Void
    ) {
        if buffer.count - offset >= size {
            var writer = ByteWriter(buffer, at: offset)
            write(&writer)
            offset += size
            return
        }
        staged.removeAll(keepingCapacity: true)
        staged.append(contentsOf: repeatElement(0, count: size))
        staged.withUnsafeMutableBytes { raw in
            var writer = ByteWriter(raw)
            write(&writer)
        }
        let count = buffer.count - offset
        staged.withUnsafeBytes { raw in
            (buffer.baseAddress! + offset).copyMemory(from: raw.baseAddress!, byteCount: count)
        }
        stagedOffset = count
        stagedIsInitial = initial
        offset = buffer.count
    }
}
