import Testing
@testable import RdmigMigration

@Suite struct ChunkDigesting {
    func region(_ pages: Int) throws -> GuestMemoryRegion {
        try GuestMemoryRegion(layout: GuestMemoryRegionLayout(id: 0, guestPhysicalBase: 0, length: UInt64(pages * 4096), pageSize: 4096))
    }

    func fill(_ region: GuestMemoryRegion, seed: UInt8) {
        for page in 0..<region.pageCount {
            region.pagePointer(page).initializeMemory(as: UInt8.self, repeating: seed &+ UInt8(truncatingIfNeeded: page), count: 4096)
        }
    }

    func digest(of region: GuestMemoryRegion, seed: UInt64 = 0) throws -> UInt64 {
        let digester = try ChunkDigester(region: region, chunkSize: 4096, seed: seed)
        digester.mark(digester.touchedBitmap(pages: [0..<region.pageCount])[...])
        return digester.drain()
    }

    @Test func equalMemoryGivesEqualDigestsAndOneChangedByteDoesNot() throws {
        let (a, b) = (try region(300), try region(300))
        fill(a, seed: 1)
        fill(b, seed: 1)
        #expect(try digest(of: a) == digest(of: b))
        b.pagePointer(123).storeBytes(of: 0xFF, toByteOffset: 4000, as: UInt8.self)
        #expect(try digest(of: a) != digest(of: b))
    }

    /// Both sides key their digests with the session's seed: the same memory digests alike
    /// under one seed, and nobody without the seed can say what the digest is.
    @Test func digestsAreKeyedByTheSessionSeed() throws {
        let (a, b) = (try region(64), try region(64))
        fill(a, seed: 4)
        fill(b, seed: 4)
        #expect(try digest(of: a, seed: 0xDEAD_BEEF) == digest(of: b, seed: 0xDEAD_BEEF))
        #expect(try digest(of: a, seed: 0xDEAD_BEEF) != digest(of: a, seed: 0xDEAD_BEF0))
        #expect(try digest(of: a, seed: 1) != digest(of: a))
    }

    @Test func rehashingTouchedChunksEqualsAFreshDigestOfTheNewContent() throws {
        let memory = try region(512)
        fill(memory, seed: 3)
        let digester = try ChunkDigester(region: memory, chunkSize: 4096)
        digester.mark(digester.touchedBitmap(pages: [0..<512])[...])
        let before = digester.drain()
        for page in [5, 6, 7, 300, 511] { memory.pagePointer(page).storeBytes(of: 0x55, as: UInt8.self) }
        digester.mark(digester.touchedBitmap(pages: [5..<8, 300..<301, 511..<512])[...])
        let after = digester.drain()
        #expect(after != before)
        #expect(after == (try digest(of: memory)))
    }

    /// The digest's format, which both sides must compute alike (changing it is a protocol
    /// change): a two-page region — the first 4096 bytes of xxHash's sanity buffer, then
    /// zeros — keyed with PRIME64. Expected values computed outside rdmig with Python's
    /// `xxhash` module (python3-xxhash): the sum mod 2^64 over chunks c of
    /// XXH3(le64(c) ‖ le64(XXH3(chunk c, seed)), seed).
    @Test func digestOfAKnownRegionMatchesAnIndependentComputation() throws {
        let memory = try region(2)
        XXH3Hashing.sanityBuffer.withUnsafeBytes { memory.pagePointer(0).copyMemory(from: $0.baseAddress!, byteCount: 4096) }
        #expect(try digest(of: memory, seed: XXH3Hashing.prime64) == 0xF23E_3AB5_992C_9916)
        #expect(try digest(of: memory, seed: 0) == 0xECBB_1A3D_73F9_76B0)
        // One chunk of both pages.
        let digester = try ChunkDigester(region: memory, chunkSize: 8192, seed: XXH3Hashing.prime64)
        digester.mark(digester.touchedBitmap(pages: [0..<2])[...])
        #expect(digester.drain() == 0xFBCC_59AD_5AAC_056A)
    }

    /// Pages recorded as known zero are never read: `liar` holds garbage where `truth` holds
    /// zeros, and its digest with those pages recorded as zero equals `truth`'s hashed from
    /// memory — for chunks of one page (rdmig's) and of four, where some chunks are only
    /// partly known zero and the region's last chunk is short. The shortcut (the all-zero
    /// chunk's digest computed once, or zeros fed in place of pages) must give exactly what
    /// hashing the zeros gives.
    @Test(arguments: [4096, 4 * 4096])
    func knownZeroPagesDigestLikeZerosHashedFromMemoryWithoutBeingRead(chunkSize: Int) throws {
        let (truth, liar) = (try region(37), try region(37))
        fill(truth, seed: 9)
        fill(liar, seed: 9)
        let knownZero = [2..<3, 8..<16, 17..<19, 30..<37]
        for run in knownZero {
            for page in run {
                truth.pagePointer(page).initializeMemory(as: UInt8.self, repeating: 0, count: 4096)
                liar.pagePointer(page).initializeMemory(as: UInt8.self, repeating: 0xA5, count: 4096)
            }
        }
        let content = [0..<2, 3..<8, 16..<17, 19..<30]
        let seed: UInt64 = 0x0123_4567_89AB_CDEF
        let fromMemory = try ChunkDigester(region: truth, chunkSize: chunkSize, seed: seed)
        fromMemory.mark(fromMemory.touchedBitmap(pages: [0..<37])[...])
        let expected = fromMemory.drain()

        let shortcut = try ChunkDigester(region: liar, chunkSize: chunkSize, seed: seed)
        shortcut.mark(shortcut.touchedBitmap(pages: content)[...], knownZero: knownZero)
        #expect(shortcut.drain() == expected)

        // A known-zero page the guest writes later is marked by a later pass (without
        // knownZero): its chunk forgets what was known and is hashed from its content.
        liar.pagePointer(12).storeBytes(of: 0x77, as: UInt8.self)
        truth.pagePointer(12).initializeMemory(as: UInt8.self, repeating: 0xA5, count: 4096)
        truth.pagePointer(12).storeBytes(of: 0x77, as: UInt8.self)
        shortcut.mark(shortcut.touchedBitmap(pages: [12..<13])[...])
        fromMemory.mark(fromMemory.touchedBitmap(pages: [12..<13])[...])
        // With 4-page chunks, chunk 3 (pages 12..<16) is now read whole: pages 13..<16 hold
        // 0xA5 in `liar`, so make `truth` say the same before comparing.
        if chunkSize > 4096 {
            for page in 13..<16 { truth.pagePointer(page).initializeMemory(as: UInt8.self, repeating: 0xA5, count: 4096) }
            fromMemory.mark(fromMemory.touchedBitmap(pages: [13..<16])[...])
        }
        #expect(shortcut.drain() == fromMemory.drain())
        #expect(shortcut.drain() != expected)
    }

    /// Chunks made only of known-zero pages are never queued: nothing is left to hash.
    @Test func wholeKnownZeroChunksAreNotQueued() throws {
        let memory = try region(64)
        let digester = try ChunkDigester(region: memory, chunkSize: 4 * 4096)
        digester.mark([][...], knownZero: [0..<64])
        #expect(digester.backlog.pendingBytes == 0)
        let fromMemory = try ChunkDigester(region: memory, chunkSize: 4 * 4096)
        fromMemory.mark(fromMemory.touchedBitmap(pages: [0..<64])[...])
        #expect(digester.drain() == fromMemory.drain())
        // Pages 1..<3 of chunk 0 only: that chunk is queued and hashed, zeros fed for them.
        let partial = try ChunkDigester(region: memory, chunkSize: 4 * 4096)
        partial.mark([][...], knownZero: [1..<3])
        let chunkZero = try ChunkDigester(region: memory, chunkSize: 4 * 4096)
        chunkZero.mark(chunkZero.touchedBitmap(pages: [0..<4])[...])
        #expect(partial.drain() == chunkZero.drain())
        #expect(partial.drain() != 0)
    }

    @Test func touchedBitmapsCoverExactlyTheRunsChunks() throws {
        let memory = try region(64)
        let digester = try ChunkDigester(region: memory, chunkSize: 4096)
        let bitmap = digester.touchedBitmap(pages: [0..<2, 9..<10, 63..<64])
        #expect(bitmap == [0b0000_0011, 0b0000_0010, 0, 0, 0, 0, 0, 0b1000_0000])
        // Bits past the region's last chunk are ignored, whatever a peer sends.
        digester.mark([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][...])
        #expect(digester.backlog.pendingBytes <= UInt64(64 * 4096))
        _ = digester.drain()
    }
}
