import Foundation
import RdmigSystem

/// Per-chunk XXH64 digests of a guest memory region, kept current during pre-copy by a
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
    /// without the session key. XXH64 is not a MAC — the DIGESTS message carrying the result
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

    /// Queues the chunks set in `bitmap` (bit 0 = chunk `firstChunk`, a multiple of 8).
    public func mark(_ bitmap: ArraySlice<UInt8>, firstChunk: Int = 0) { state.mark(bitmap, firstChunk: firstChunk) }

    /// Records the chunks set in `bitmap` (bit 0 = chunk 0) as all zeros without reading
    /// them: never-populated memory, which reading would fault in. A chunk the guest writes
    /// afterwards is marked again by a later pass and hashed from its content then.
    public func markZero(_ bitmap: [UInt8]) { state.markZero(bitmap) }

    /// Waits until every marked chunk has been hashed; returns the region's digest.
    public func drain() -> UInt64 { state.drain() }

    /// A never-hashed chunk (digest 0) contributes nothing, so the sum starts at 0.
    @inline(__always)
    static func contribution(chunk: Int, hash: UInt64, seed: UInt64 = 0) -> UInt64 {
        guard hash != 0 else { return 0 }
        var pair = (UInt64(chunk).littleEndian, hash.littleEndian)
        return withUnsafeBytes(of: &pair) { XXHash64.hash($0, seed: seed) }
    }

    /// Bytes queued and not hashed yet, and the hashing rate seen so far (bytes per second):
    /// together they predict how long `drain()` will take inside the downtime.
    public var backlog: (pendingBytes: UInt64, bytesPerSecond: Double?) { state.backlog }

    /// The time `drain()` would take if `extraBytes` more were marked now.
    public func predictedDrainTime(extraBytes: UInt64) -> Duration {
        let (pending, rate) = backlog
        // Before any measurement, assume a conservative 2 GB/s (XXH64 runs at ~12 GB/s here).
        let seconds = Double(pending + extraBytes) / (rate ?? 2e9)
        return .nanoseconds(Int64(seconds * 1e9))
    }

    /// The digest table, the queue of chunks to hash, and the thread's loop.
    private final class State: @unchecked Sendable {
        let region: GuestMemoryRegion
        let chunkSize: Int
        let chunkCount: Int
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
        private var fullZeroHash: UInt64?

        let seed: UInt64

        init(region: GuestMemoryRegion, chunkSize: Int, chunkCount: Int, seed: UInt64) {
            self.seed = seed
            self.region = region
            self.chunkSize = chunkSize
            self.chunkCount = chunkCount
            hashes = [UInt64](repeating: 0, count: chunkCount)
            pending = [UInt8](repeating: 0, count: (chunkCount + 7) / 8)
        }

        /// Ends `run()` at its next wait (a batch being hashed is finished first).
        func stop() {
            condition.lock()
            stopping = true
            condition.broadcast()
            condition.unlock()
        }

        /// Queues the chunks set in `bitmap` (bit 0 = chunk `firstChunk`, a multiple of 8).
        func mark(_ bitmap: ArraySlice<UInt8>, firstChunk: Int = 0) {
            precondition(firstChunk % 8 == 0, "bitmaps start on a byte")
            let offset = firstChunk / 8
            condition.lock()
            for (position, byte) in bitmap.enumerated() where byte != 0 && offset + position < pending.count {
                let index = offset + position
                let added = byte & ~pending[index]
                pending[index] |= byte
                pendingCount += added.nonzeroBitCount
            }
            // Bits beyond the last chunk are ignored: a peer's bitmap is not trusted to be exact.
            if chunkCount % 8 != 0, pending.count > 0 {
                let valid = UInt8((1 << (chunkCount % 8)) - 1)
                let extra = pending[pending.count - 1] & ~valid
                pendingCount -= extra.nonzeroBitCount
                pending[pending.count - 1] &= valid
            }
            condition.signal()
            condition.unlock()
        }

        /// Records the chunks set in `bitmap` (bit 0 = chunk 0) as all zeros without reading
        /// them: never-populated memory, which reading would fault in. A chunk the guest writes
        /// afterwards is marked again by a later pass and hashed from its content then.
        func markZero(_ bitmap: [UInt8]) {
            condition.lock()
            defer { condition.unlock() }
            for (index, byte) in bitmap.enumerated() where byte != 0 {
                var bits = byte
                while bits != 0 {
                    let chunk = index * 8 + bits.trailingZeroBitCount
                    bits &= bits - 1
                    guard chunk < chunkCount else { break }
                    let hash = zeroHash(count: min(chunkSize, region.length - chunk * chunkSize))
                    combined = combined &- ChunkDigester.contribution(chunk: chunk, hash: hashes[chunk], seed: seed) &+ ChunkDigester.contribution(chunk: chunk, hash: hash, seed: seed)
                    hashes[chunk] = hash
                }
            }
        }

        /// XXH64 of `count` zero bytes (the last chunk of a region may be short).
        private func zeroHash(count: Int) -> UInt64 {
            if count == chunkSize, let known = fullZeroHash { return known }
            let zeros = [UInt8](repeating: 0, count: count)
            let hash = zeros.withUnsafeBytes { XXHash64.hash($0.baseAddress!, count: count, seed: seed) }
            if count == chunkSize { fullZeroHash = hash }
            return hash
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
                let length = region.length
                let size = chunkSize
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
                            var index = worker * count / workers
                            let end = (worker + 1) * count / workers
                            while index < end {
                                let start = input.pointer[index] * size
                                let page = UnsafeRawPointer(bitPattern: baseAddress + UInt(start))!
                                output.pointer[index] = XXHash64.hash(page, count: min(size, length - start), seed: seed)
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
