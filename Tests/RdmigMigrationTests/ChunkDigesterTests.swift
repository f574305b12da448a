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

    @Test func chunksMarkedZeroDigestLikeZeroChunksHashedFromMemory() throws {
        let memory = try region(256)
        fill(memory, seed: 9)
        for page in 100..<200 { memory.pagePointer(page).initializeMemory(as: UInt8.self, repeating: 0, count: 4096) }
        let digester = try ChunkDigester(region: memory, chunkSize: 4096)
        // Pages 100..<200 recorded as zeros unread, the rest hashed.
        digester.markZero(digester.touchedBitmap(pages: [100..<200]))
        digester.mark(digester.touchedBitmap(pages: [0..<100, 200..<256])[...])
        #expect(digester.drain() == (try digest(of: memory)))
        // A page written after it was recorded as zero is marked by a later pass and rehashed.
        memory.pagePointer(150).storeBytes(of: 0x77, as: UInt8.self)
        #expect(digester.drain() != (try digest(of: memory)))
        digester.mark(digester.touchedBitmap(pages: [150..<151])[...])
        #expect(digester.drain() == (try digest(of: memory)))
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
