/// What the synthetic guest's page `page` holds after its `version`-th write, derived from
/// (seed, page, version) alone, so the destination can check every page without the source's
/// memory: word 0 is the page index, word 1 the version, and word j >= 2 is
/// `base ^ (j * golden)` with `base` a SplitMix64 hash of (seed, page, version). Version 0 is
/// a page never written: all zero bytes.
///
/// One multiply per word keeps writing cheap enough for a 1 GiB/s writer on one core, and
/// any two versions of a page differ in every word from word 1 on.
public enum SyntheticPageContent {
    static let golden: UInt64 = 0x9E37_79B9_7F4A_7C15

    @inline(__always)
    static func splitMix(_ value: UInt64) -> UInt64 {
        var z = value &+ golden
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    static func base(seed: UInt64, page: Int, version: UInt32) -> UInt64 {
        splitMix(seed ^ splitMix(UInt64(page) &* 0xD6E8_FEB8_6659_FD93 ^ UInt64(version) << 40 ^ UInt64(version)))
    }

    /// Writes the content of (page, version) into `destination` (`pageSize` bytes, 8-aligned).
    @inline(__always)
    public static func fill(
        _ destination: UnsafeMutableRawPointer, pageSize: Int, seed: UInt64, page: Int, version: UInt32
    ) {
        let words = destination.assumingMemoryBound(to: UInt64.self)
        let count = pageSize / 8
        if version == 0 {
            for index in 0..<count { words[index] = 0 }
            return
        }
        let value = base(seed: seed, page: page, version: version)
        words[0] = UInt64(page)
        words[1] = UInt64(version)
        var multiple = 2 &* golden
        for index in 2..<count {
            words[index] = value ^ multiple
            multiple &+= golden
        }
    }

    /// True when `source` holds exactly the content of (page, version).
    public static func matches(
        _ source: UnsafeRawPointer, pageSize: Int, seed: UInt64, page: Int, version: UInt32
    ) -> Bool {
        let words = source.assumingMemoryBound(to: UInt64.self)
        let count = pageSize / 8
        if version == 0 {
            var accumulated: UInt64 = 0
            for index in 0..<count { accumulated |= words[index] }
            return accumulated == 0
        }
        guard words[0] == UInt64(page), words[1] == UInt64(version) else { return false }
        let value = base(seed: seed, page: page, version: version)
        var multiple = 2 &* golden
        var difference: UInt64 = 0
        for index in 2..<count {
            difference |= words[index] ^ (value ^ multiple)
            multiple &+= golden
        }
        return difference == 0
    }

    /// The content as bytes (tests, tools).
    public static func bytes(pageSize: Int, seed: UInt64, page: Int, version: UInt32) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: pageSize)
        result.withUnsafeMutableBytes { fill($0.baseAddress!, pageSize: pageSize, seed: seed, page: page, version: version) }
        return result
    }
}
