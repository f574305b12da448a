import Foundation
import RdmigSystem

/// Per-chunk XXH3-64 digests of a guest memory region, kept current during pre-copy by a
/// background thread so that only the last iteration's chunks are hashed inside the downtime.
///
/// Why it is sound on the source, whose memory changes while it hashes: a chunk is (re)hashed
/// after every iteration that wrote it. A page the guest changes after the iteration's
/// collect-and-clear is dirty again, so a later iteration — at the latest the final one, with
/// the guest paused — writes it and marks its chunk again. After the final iteration is
/// marked and `drain()` returns, every chunk was last hashed after its last change, on both
/// sides. On the destination a chunk is marked only after the iteration's ITERATION_DONE,
/// which RC ordering delivers after the iteration's writes landed.
public final class ChunkDigester: Sendable {
    public let region: GuestMemoryRegion
    public let chunkSize: Int
    public let chunkCount: Int

    /// What the digest thread works on. The thread holds this, never the digester: a thread
    /// holding its owner (even `unowned`, whose call to a method retains it for the call)
    /// keeps the owner alive for as long as it runs, so the deinit that stops it never came
    /// and a `dest --keep-serving` kept every guest's pinned memory and a thread for each.
    private let state: State
    private let thread: SystemThread

    /// One chunk per page: what must be hashed inside the downtime is then exactly the last
    /// iteration's pages. (64 KiB chunks were measured first: with pages dirtied at random
    /// the last iteration touched nearly every chunk of the working set, and hashing them
    /// took a third of a 40 ms downtime.)
    public static func chunkSize(pageSize: Int) -> Int { pageSize }

    /// `seed` keys every chunk hash and the combination (the session's `digestSeed`): someone
    /// on the path who rewrites pages cannot compute what the destination's digest will be
    /// without the session key. XXH3 is not a MAC — the DIGESTS message carrying the result
    /// is authenticated by the control channel's HMAC, and encryption is what defends the
    /// page bytes themselves — but a seed unknown to the attacker takes away the cheap forgery
    /// of a chunk with the same unkeyed hash.
    public init(region: GuestMemoryRegion, chunkSize: Int, seed: UInt64 = 0) throws(SystemCallError) {
        precondition(chunkSize >= region.pageSize && chunkSize % region.pageSize == 0, "chunks are whole pages")
        self.region = region
        self.chunkSize = chunkSize
        chunkCount = (region.length + chunkSize - 1) / chunkSize
        let state = State(region: region, chunkSize: chunkSize, chunkCount: chunkCount, seed: seed)
        self.state = state
        thread = try SystemThread(name: "rdmig-digest") { state.run() }
    }

    /// Stops and joins the digest thread (the region's mapping is then released with the last
    /// reference to the digester). Call it when the migration ends, whatever the outcome;
    /// calling it again does nothing. Nothing may be marked or drained afterwards.
    public func close() {
        state.stop()
        thread.join()
    }

    deinit {
        close()
    }

    /// The bitmap (bit c = chunk c) of chunks that the page runs touch.
    @_optimize(speed)
    public func touchedBitmap<Runs: Sequence>(pages runs: Runs) -> [UInt8] where Runs.Element == Range<Int> {
        var bitmap = [UInt8](repeating: 0, count: (chunkCount + 7) / 8)
        let pagesPerChunk = chunkSize / region.pageSize
        for run in runs where !run.isEmpty {
            for chunk in (run.lowerBound / pagesPerChunk)...((run.upperBound - 1) / pagesPerChunk) {
                bitmap[chunk >> 3] |= 1 << UInt8(chunk & 7)
            }
        }
        return bitmap
    }

    /// Queues the chunks set in `bitmap` (bit 0 = chunk `firstChunk`, a multiple of 8), to be
    /// hashed from their content, and records the pages of `knownZero` (page runs) as all
    /// zeros, never to be read: never-populated memory, which reading would fault in.
    ///
    /// A chunk made only of known-zero pages takes the all-zero chunk's digest (computed once
    /// when the digester starts) at once, without any hashing; a chunk with some is queued and
    /// hashed in pieces, zeros fed in place of those pages. What a page is known to hold lasts
    /// until its chunk is marked again without it: a page the guest writes afterwards is dirty,
    /// so a later pass marks its chunk and it is hashed from its content then.
    public func mark(_ bitmap: ArraySlice<UInt8>, firstChunk: Int = 0, knownZero: [Range<Int>] = []) {
        state.mark(bitmap, firstChunk: firstChunk, knownZero: knownZero)
    }

    /// Waits until every marked chunk has been hashed; returns the region's digest.
    public func drain() -> UInt64 { state.drain() }

    /// A never-hashed chunk (digest 0) contributes nothing, so the sum starts at 0.
    @inline(__always)
    static func contribution(chunk: Int, hash: UInt64, seed: UInt64 = 0) -> UInt64 {
        guard hash != 0 else { return 0 }
        var pair = (UInt64(chunk).littleEndian, hash.littleEndian)
        return withUnsafeBytes(of: &pair) { XXH3.hash($0, seed: seed) }
    }

    /// Bytes queued and not hashed yet, and the hashing rate seen so far (bytes per second):
    /// together they predict how long `drain()` will take inside the downtime.
    public var backlog: (pendingBytes: UInt64, bytesPerSecond: Double?) { state.backlog }

    /// The time `drain()` would take if `extraBytes` more were marked now.
    public func predictedDrainTime(extraBytes: UInt64) -> Duration {
        let (pending, rate) = backlog
        // Before any measurement, assume a conservative 2 GB/s (XXH3 hashed 4 KiB pages at
        // 9-17 GB/s per core here, by load: Perf/README.md, "Chunk digests").
        let seconds = Double(pending + extraBytes) / (rate ?? 2e9)
        return .nanoseconds(Int64(seconds * 1e9))
    }

    /// The digest table, the queue of chunks to hash, and the thread's loop.
    private final class State: @unchecked Sendable {
        let region: GuestMemoryRegion
        let chunkSize: Int
        let chunkCount: Int
        let pagesPerChunk: Int
        private let condition = NSCondition()
        private var hashes: [UInt64]
        private var pending: [UInt8]
        private var pendingCount = 0
        private var busy = false
        private var stopping = false
        /// The region's digest, updated as chunks are rehashed: the sum of each chunk's
        /// contribution (a hash of its index and digest), so `drain()` needs no pass over the
        /// whole table inside the downtime (an XXH64 over a 4 GiB region's 8 MiB table took
        /// ~0.7 ms per side). A sum is no defence against a forger — the peer is authenticated —
        /// but any lost or torn page changes it except with probability 2^-64.
        private var combined: UInt64 = 0
        private var inProgressBytes: UInt64 = 0
        private var hashedBytes: UInt64 = 0
        private var hashingTime: Duration = .zero

        let seed: UInt64
        /// One page of zeros: what is fed in place of a known-zero page.
        private let zeroPage: UnsafeMutableRawPointer
        /// The digests of an all-zero chunk and of an all-zero last chunk (which may be short),
        /// computed once, the way a chunk of known-zero pages is hashed.
        private let zeroChunkHash: UInt64
        private let zeroLastChunkHash: UInt64
        /// Pages known to hold zeros, inside chunks that also hold other pages (a chunk of
        /// only such pages takes `zeroChunkHash` instead). Nil with one page per chunk, where
        /// that cannot happen. Atomic words: the hashing workers read it outside the lock
        /// while a later `mark` may change another chunk's pages.
        private let knownZeroPages: AtomicPageBitmap?

        init(region: GuestMemoryRegion, chunkSize: Int, chunkCount: Int, seed: UInt64) {
            self.seed = seed
            self.region = region
            self.chunkSize = chunkSize
            self.chunkCount = chunkCount
            pagesPerChunk = chunkSize / region.pageSize
            hashes = [UInt64](repeating: 0, count: chunkCount)
            pending = [UInt8](repeating: 0, count: (chunkCount + 7) / 8)
            zeroPage = .allocate(byteCount: region.pageSize, alignment: 64)
            zeroPage.initializeMemory(as: UInt8.self, repeating: 0, count: region.pageSize)
            let allZero = AtomicPageBitmap(pageCount: pagesPerChunk)
            allZero.update(0..<pagesPerChunk, set: true)
            var stream: XXH3Stream?
            let pageSize = region.pageSize
            zeroChunkHash = State.hash(chunkAt: UnsafeRawPointer(zeroPage), pages: 0..<pagesPerChunk, pageSize: pageSize,
                                       knownZero: allZero, zeroPage: zeroPage, seed: seed, stream: &stream)
            let lastPages = chunkCount == 0 ? 0 : (region.length - (chunkCount - 1) * chunkSize) / pageSize
            zeroLastChunkHash = State.hash(chunkAt: UnsafeRawPointer(zeroPage), pages: 0..<lastPages, pageSize: pageSize,
                                           knownZero: allZero, zeroPage: zeroPage, seed: seed, stream: &stream)
            knownZeroPages = pagesPerChunk > 1 ? AtomicPageBitmap(pageCount: region.pageCount) : nil
        }

        deinit {
            zeroPage.deallocate()
        }

        /// The pages of `chunk`, in region page numbers (the last chunk may have fewer).
        private func pages(of chunk: Int) -> Range<Int> {
            (chunk * pagesPerChunk)..<min((chunk + 1) * pagesPerChunk, region.pageCount)
        }

        /// XXH3 of the chunk whose first page is at `base` and whose pages are `pages`, the
        /// pages marked in `knownZero` fed from `zeroPage` unread. The whole chunk in one call
        /// when none is known zero; otherwise `stream` (created on first need, then reused)
        /// takes the runs of pages read and the zeros in order, which hashes alike.
        @_optimize(speed)
        static func hash(chunkAt base: UnsafeRawPointer, pages: Range<Int>, pageSize: Int, knownZero: AtomicPageBitmap?,
                         zeroPage: UnsafeRawPointer, seed: UInt64, stream: inout XXH3Stream?) -> UInt64 {
            guard let knownZero, knownZero.markedCount(in: pages) > 0 else {
                return XXH3.hash(base, count: pages.count * pageSize, seed: seed)
            }
            if stream == nil { stream = XXH3Stream(seed: seed) }
            stream!.reset(seed: seed)
            var runStart = 0
            for (offset, page) in pages.enumerated() where knownZero.isMarked(page) {
                if offset > runStart {
                    stream!.update(base + runStart * pageSize, count: (offset - runStart) * pageSize)
                }
                stream!.update(zeroPage, count: pageSize)
                runStart = offset + 1
            }
            if pages.count > runStart {
                stream!.update(base + runStart * pageSize, count: (pages.count - runStart) * pageSize)
            }
            return stream!.digest()
        }

        /// Ends `run()` at its next wait (a batch being hashed is finished first).
        func stop() {
            condition.lock()
            stopping = true
            condition.broadcast()
            condition.unlock()
        }

        /// Queues the chunks set in `bitmap` (bit 0 = chunk `firstChunk`, a multiple of 8) and
        /// records the pages of `knownZero` as zeros (see `ChunkDigester.mark`).
        func mark(_ bitmap: ArraySlice<UInt8>, firstChunk: Int = 0, knownZero: [Range<Int>] = []) {
            precondition(firstChunk % 8 == 0, "bitmaps start on a byte")
            let offset = firstChunk / 8
            condition.lock()
            for (position, byte) in bitmap.enumerated() where byte != 0 && offset + position < pending.count {
                let index = offset + position
                let added = byte & ~pending[index]
                pending[index] |= byte
                pendingCount += added.nonzeroBitCount
                // A chunk marked to be hashed from its content forgets its known-zero pages.
                if let knownZeroPages {
                    var bits = byte
                    while bits != 0 {
                        let chunk = index * 8 + bits.trailingZeroBitCount
                        bits &= bits - 1
                        if chunk < chunkCount { knownZeroPages.update(pages(of: chunk), set: false) }
                    }
                }
            }
            // Bits beyond the last chunk are ignored: a peer's bitmap is not trusted to be exact.
            if chunkCount % 8 != 0, pending.count > 0 {
                let valid = UInt8((1 << (chunkCount % 8)) - 1)
                let extra = pending[pending.count - 1] & ~valid
                pendingCount -= extra.nonzeroBitCount
                pending[pending.count - 1] &= valid
            }
            recordKnownZero(knownZero)
            condition.signal()
            condition.unlock()
        }

        /// Under the lock: a chunk whose every page is known zero takes the all-zero digest
        /// and leaves the queue; a chunk with only some is queued with them recorded.
        private func recordKnownZero(_ runs: [Range<Int>]) {
            for run in runs where !run.isEmpty {
                precondition(run.lowerBound >= 0 && run.upperBound <= region.pageCount, "pages \(run) outside region \(region.id)")
                knownZeroPages?.update(run, set: true)
                for chunk in (run.lowerBound / pagesPerChunk)...((run.upperBound - 1) / pagesPerChunk) {
                    let chunkPages = pages(of: chunk)
                    let allZero = knownZeroPages.map { $0.markedCount(in: chunkPages) == chunkPages.count } ?? true
                    let (index, bit) = (chunk >> 3, UInt8(1) << UInt8(chunk & 7))
                    if allZero {
                        knownZeroPages?.update(chunkPages, set: false)
                        if pending[index] & bit != 0 {
                            pending[index] &= ~bit
                            pendingCount -= 1
                        }
                        let hash = chunk == chunkCount - 1 ? zeroLastChunkHash : zeroChunkHash
                        combined = combined &- ChunkDigester.contribution(chunk: chunk, hash: hashes[chunk], seed: seed)
                            &+ ChunkDigester.contribution(chunk: chunk, hash: hash, seed: seed)
                        hashes[chunk] = hash
                    } else if pending[index] & bit == 0 {
                        pending[index] |= bit
                        pendingCount += 1
                    }
                }
            }
        }

        /// Waits until every marked chunk has been hashed; returns the region's digest.
        func drain() -> UInt64 {
            condition.lock()
            while pendingCount > 0 || busy { condition.wait() }
            let digest = combined
            condition.unlock()
            return digest
        }

        /// Bytes queued and not hashed yet, and the hashing rate seen so far (bytes per second):
        /// together they predict how long `drain()` will take inside the downtime.
        var backlog: (pendingBytes: UInt64, bytesPerSecond: Double?) {
            condition.lock()
            defer { condition.unlock() }
            let rate = hashingTime > .zero ? Double(hashedBytes) / hashingTime.seconds : nil
            return (UInt64(pendingCount) * UInt64(chunkSize) + inProgressBytes, rate)
        }

        private let clock = ContinuousClock()

        @_optimize(speed)
        func run() {
            var chunks: [Int] = []
            chunks.reserveCapacity(chunkCount)
            while true {
                condition.lock()
                while pendingCount == 0 && !stopping { condition.wait() }
                if stopping {
                    condition.unlock()
                    return
                }
                chunks.removeAll(keepingCapacity: true)
                for index in 0..<pending.count where pending[index] != 0 {
                    var bits = pending[index]
                    while bits != 0 {
                        let bit = bits.trailingZeroBitCount
                        chunks.append(index * 8 + bit)
                        bits &= bits - 1
                    }
                    pending[index] = 0
                }
                pendingCount = 0
                busy = true
                inProgressBytes = UInt64(chunks.count * chunkSize)
                condition.unlock()

                let started = clock.now
                var results = [UInt64](repeating: 0, count: chunks.count)
                let baseAddress = UInt(bitPattern: region.pagePointer(0))
                let zeros = UInt(bitPattern: zeroPage)
                let (pageSize, perChunk, pageCount, seed, knownZero) = (region.pageSize, pagesPerChunk, region.pageCount, seed, knownZeroPages)
                // Large batches are split across the CPUs: the last iteration's pages are hashed
                // inside the downtime, where nothing else needs them (measured on 2 cores: 10 MiB
                // took 2-6 ms on one thread).
                let workers = chunks.count >= 256 ? min(ProcessInfo.processInfo.activeProcessorCount, 4) : 1
                chunks.withUnsafeBufferPointer { chunkList in
                    results.withUnsafeMutableBufferPointer { output in
                        let output = UnsafeSendablePointer(pointer: output.baseAddress!)
                        let input = UnsafeSendablePointer(pointer: UnsafeMutablePointer(mutating: chunkList.baseAddress!))
                        let count = chunkList.count
                        DispatchQueue.concurrentPerform(iterations: workers) { worker in
                            var stream: XXH3Stream?
                            var index = worker * count / workers
                            let end = (worker + 1) * count / workers
                            while index < end {
                                let firstPage = input.pointer[index] * perChunk
                                let chunk = UnsafeRawPointer(bitPattern: baseAddress + UInt(firstPage * pageSize))!
                                output.pointer[index] = State.hash(
                                    chunkAt: chunk, pages: firstPage..<min(firstPage + perChunk, pageCount), pageSize: pageSize,
                                    knownZero: knownZero, zeroPage: UnsafeRawPointer(bitPattern: zeros)!, seed: seed, stream: &stream)
                                index += 1
                            }
                        }
                    }
                }
                let computed = zip(chunks, results)

                let elapsed = clock.now - started
                condition.lock()
                for (chunk, hash) in computed {
                    combined = combined &- ChunkDigester.contribution(chunk: chunk, hash: hashes[chunk], seed: seed) &+ ChunkDigester.contribution(chunk: chunk, hash: hash, seed: seed)
                    hashes[chunk] = hash
                }
                hashedBytes += UInt64(chunks.count * chunkSize)
                hashingTime += elapsed
                inProgressBytes = 0
                busy = false
                condition.broadcast()
                condition.unlock()
            }
        }
    }
}
