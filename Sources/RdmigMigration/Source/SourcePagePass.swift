import RdmigChannels
import RdmigDeviceState
import RdmigTransport

/// One pass of pages and the VF state beside them: what the pre-copy passes and the
/// stop-and-copy pass send.
extension SourceMigrationRun {
    /// Page bytes written between two TOUCHED_CHUNKS fences: small enough that the
    /// destination's hashing of the last segment inside the downtime is short (and runs on
    /// pages still in its caches), large enough that fences stay a few per cent of the control
    /// traffic (a 1 GiB pass: 256 fences of ~128 bytes of bitmap).
    static let fenceBytes = 4 << 20

    /// One iteration of pages: the zero-page gate, the pages of `knownZero` (one chunk per
    /// page) as zero markers without reading them, the writes with a TOUCHED_CHUNKS fence
    /// every `fenceBytes`, the last TOUCHED_CHUNKS (which asks the destination to hash and
    /// acknowledge the iteration), ITERATION_DONE.
    func sendPages(_ dirty: DirtyBitmap, knownZero: DirtyBitmap? = nil, iteration: UInt32,
                   path: SourceDataPath) throws(MigrationError) -> PageIterationStatistics {
        let pages = path.pages, region = path.pageRegion, digester = path.digester
        while pages.awaitsZeroPagesApplied {
            try handleAsynchronous(try path.session.receive(.precopy, during: "waiting for ZERO_PAGES_APPLIED", timeout: waitTimeout), path: path)
        }
        let zeroRuns = knownZero.map { dirty.intersection($0).runs() } ?? []
        // Runs no longer than a fence segment, so a long run (a first pass) is fenced too.
        let fencePages = max(1, Self.fenceBytes / region.pageSize)
        let runs = (knownZero.map { dirty.subtracting($0) } ?? dirty).runs(maximumLength: fencePages)
        // Hash this side's copy while the pages travel: inside the downtime the guest is
        // paused, so the hashes are final, and the digest lap shrinks to what the wire hides.
        let touched = digester.touchedBitmap(pages: runs)
        digester.mark(touched[...])
        let pagesPerChunk = digester.chunkSize / region.pageSize
        func chunks(of pages: Range<Int>) -> Range<Int> {
            (pages.lowerBound / pagesPerChunk)..<((pages.upperBound - 1) / pagesPerChunk + 1)
        }
        let during = "writing iteration \(iteration)'s \(dirty.count) pages"
        func onChannel<T>(_ body: () throws(ChannelError) -> T) throws(MigrationError) -> T {
            do { return try body() } catch { throw MigrationError.channel(error, .precopy, during: during) }
        }
        try onChannel { () throws(ChannelError) in try pages.beginIteration(iteration) }
        if !zeroRuns.isEmpty {
            // Unread on both counts: this side records their hash as a zero page's, and the
            // destination, which zeroes them, hashes them behind the fence.
            let zeroTouched = digester.touchedBitmap(pages: zeroRuns)
            digester.markZero(zeroTouched)
            try onChannel { () throws(ChannelError) in
                try pages.writeKnownZero(zeroRuns.lazy.map { PageRun(firstPage: UInt64($0.lowerBound), count: UInt64($0.count)) }, of: region)
                try pages.fence()
            }
            try sendTouched(zeroTouched, chunks: 0..<digester.chunkCount, isLast: false, iteration: iteration, path: path)
        }
        var segment: Range<Int>?
        var fencedBytes: UInt64 = 0
        for run in runs {
            try onChannel { () throws(ChannelError) in
                try pages.write(CollectionOfOne(PageRun(firstPage: UInt64(run.lowerBound), count: UInt64(run.count))), of: region)
            }
            segment = (segment?.lowerBound ?? run.lowerBound)..<run.upperBound
            guard pages.bytesWrittenThisIteration - fencedBytes >= UInt64(Self.fenceBytes), let pageRange = segment else { continue }
            // Behind the fence every page of the segment has landed on the destination.
            try onChannel { () throws(ChannelError) in try pages.fence() }
            try sendTouched(touched, chunks: chunks(of: pageRange), isLast: false, iteration: iteration, path: path)
            fencedBytes = pages.bytesWrittenThisIteration
            segment = nil
        }
        try onChannel { () throws(ChannelError) in try pages.fence() }
        try sendTouched(touched, chunks: segment.map(chunks(of:)) ?? 0..<0, isLast: true, iteration: iteration, path: path)
        return try onChannel { () throws(ChannelError) in try pages.endIteration(timeout: waitTimeout) }
    }

    /// TOUCHED_CHUNKS for `chunks` of `touched`, in bitmaps of at most a control frame; only
    /// non-empty ones travel, except the iteration's last, which always does.
    private func sendTouched(_ touched: [UInt8], chunks: Range<Int>, isLast: Bool, iteration: UInt32,
                             path: SourceDataPath) throws(MigrationError) {
        let firstByte = chunks.lowerBound / 8
        let endByte = max(firstByte, (chunks.upperBound + 7) / 8)
        let step = MigrationMessage.TouchedChunks.maximumBitmapBytes
        var start = firstByte
        repeat {
            let end = min(start + step, endByte)
            let bytes = touched[start..<end]
            let last = isLast && end == endByte
            if last || bytes.contains(where: { $0 != 0 }) {
                try path.session.send(.touchedChunks(.init(iteration: iteration, regionID: path.region.id, chunkSize: UInt32(path.digester.chunkSize),
                                                           firstChunk: UInt32(start * 8), isLast: last, bitmap: Array(bytes))), .precopy)
            }
            start = end
        } while start < endByte
    }

    /// Pre-copy VF state: what the device has pending now, bounded so a busy device cannot
    /// keep one iteration going forever.
    func sendPrecopy(_ device: inout Device, path: SourceDataPath) throws(MigrationError) -> UInt64 {
        guard let stream = path.deviceStream else { return 0 }
        let budget: UInt64
        do {
            let info = try device.provider.precopyInfo()
            budget = info.initialBytes + info.dirtyBytes + 1
        } catch {
            throw MigrationError(.precopy, "VF \(device.provider.name): \(error)")
        }
        let before = device.sender.precopyBytes
        var wrote = false
        while device.sender.precopyBytes - before < budget {
            let length: Int?
            do {
                length = try device.sender.nextPrecopyRecord(encoder: &path.recordEncoder, into: path.recordBuffer)
            } catch {
                throw MigrationError(.precopy, "VF \(device.provider.name) pre-copy: \(error)")
            }
            guard let length else { break }
            do {
                try stream.write(UnsafeRawBufferPointer(rebasing: path.recordBuffer[0..<length]), timeout: waitTimeout)
            } catch {
                throw MigrationError.channel(error, .precopy, during: "streaming VF \(device.provider.name) state")
            }
            wrote = true
        }
        // A partly filled slot would otherwise wait for more state: the destination needs the
        // initial bytes now, to acknowledge them before switchover.
        if wrote {
            do {
                try stream.flush(timeout: waitTimeout)
            } catch {
                throw MigrationError.channel(error, .precopy, during: "streaming VF \(device.provider.name) state")
            }
        }
        return device.sender.precopyBytes - before
    }

    /// Stop-copy VF state: everything the stopped device has left, then VF_STATE_DONE.
    func sendStopCopy(_ device: inout Device, path: SourceDataPath) throws(MigrationError) -> UInt64 {
        guard let stream = path.deviceStream else { return 0 }
        var records: UInt64 = 0
        while true {
            let length: Int?
            do {
                length = try device.sender.nextStopCopyRecord(encoder: &path.recordEncoder, into: path.recordBuffer)
            } catch {
                throw MigrationError(.switchover, "VF \(device.provider.name) stop-copy: \(error)")
            }
            guard let length else { break }
            records += 1
            do {
                try stream.write(UnsafeRawBufferPointer(rebasing: path.recordBuffer[0..<length]), timeout: waitTimeout)
            } catch {
                throw MigrationError.channel(error, .switchover, during: "streaming VF \(device.provider.name) stop-copy state")
            }
        }
        try path.session.send(.vfStateDone(.init(deviceID: device.id, phase: .stopCopy, bytes: device.sender.stopCopyBytes, records: records, checksum: 0)),
                              .switchover)
        return device.sender.stopCopyBytes
    }
}
