import Testing
@testable import RdmigMigration

/// rdmig's chunk digests through libxxhash, against answers computed outside rdmig.
@Suite struct XXH3Hashing {
    static let prime32: UInt64 = 2_654_435_761
    static let prime64: UInt64 = 11_400_714_785_074_694_797

    /// xxHash's sanity buffer (cli/xsum_sanity_check.c): byte i is the top byte of
    /// PRIME32 × PRIME64^i (mod 2^64).
    static let sanityBuffer: [UInt8] = {
        var generator = prime32
        return (0..<(4096 + 64 + 1)).map { _ in
            defer { generator = generator &* prime64 }
            return UInt8(generator >> 56)
        }
    }()

    /// XXH3_64bits_withSeed of the sanity buffer's first `length` bytes: the test vectors
    /// published in xxHash's cli/xsum_sanity_check.c (XSUM_XXH3_testdata). The seed-0 ones
    /// were also recomputed here with `xxhsum -H3` (Debian's xxhash 0.8.1, which carries its
    /// own copy of the hash, not libxxhash).
    static let vectors: [(length: Int, seed: UInt64, hash: UInt64)] = [
        (0, 0, 0x2D06_8005_38D3_94C2), (0, prime64, 0xA8A6_B918_B2F0_364A),
        (1, 0, 0xC44B_DFF4_074E_ECDB), (1, prime64, 0x032B_E332_DD76_6EF8),
        (6, 0, 0x27B5_6A84_CD2D_7325), (6, prime64, 0x8458_9C11_6AB5_9AB9),
        (12, 0, 0xA713_DAF0_DFBB_77E7), (12, prime64, 0xE730_3E1B_2336_DE0E),
        (24, 0, 0xA3FE_70BF_9D35_10EB), (24, prime64, 0x850E_80FC_35BD_D690),
        (48, 0, 0x397D_A259_ECBA_1F11), (48, prime64, 0xADC2_CBAA_44AC_C616),
        (80, 0, 0xBCDE_FBBB_2C47_C90A), (80, prime64, 0xC6DD_0CB6_9953_2E73),
        (195, 0, 0xCD94_217E_E362_EC3A), (195, prime64, 0xBA68_003D_370C_B3D9),
        (403, 0, 0xCDEB_804D_65C6_DEA4), (403, prime64, 0x6259_F6EC_FD64_43FD),
        (512, 0, 0x617E_4959_9013_CB6B), (512, prime64, 0x3CE4_57DE_14C2_7708),
        (2048, 0, 0xDD59_E2C3_A5F0_38E0), (2048, prime64, 0x66F8_1670_669A_BABC),
        (2367, 0, 0xCB37_AEB9_E5D3_61ED), (2367, prime64, 0xD2DB_3415_B942_B42A),
    ]

    @Test func oneShotHashesMatchThePublishedVectors() {
        for vector in Self.vectors {
            let bytes = Array(Self.sanityBuffer[0..<vector.length])
            #expect(XXH3.hash(bytes, seed: vector.seed) == vector.hash, "length \(vector.length) seed \(vector.seed)")
        }
    }

    /// The all-zero chunks rdmig digests most (`xxhsum -H3` of 4096 and 65536 zero bytes).
    @Test func zeroPagesMatchXxhsum() {
        #expect(XXH3.hash([UInt8](repeating: 0, count: 4096), seed: 0) == 0x93D7_6FE1_48C6_89BA)
        #expect(XXH3.hash([UInt8](repeating: 0, count: 65536), seed: 0) == 0x33B2_02D3_02B6_5CAA)
    }

    /// The seed keys the hash: the published seeded vectors differ from the unseeded ones
    /// above, and one bit of seed changes every length's hash.
    @Test func theSeedKeysTheHash() {
        for vector in Self.vectors where vector.seed == Self.prime64 {
            let bytes = Array(Self.sanityBuffer[0..<vector.length])
            #expect(XXH3.hash(bytes, seed: vector.seed) != XXH3.hash(bytes, seed: 0))
            #expect(XXH3.hash(bytes, seed: vector.seed) != XXH3.hash(bytes, seed: vector.seed ^ 1))
        }
    }

    /// A chunk hashed in pieces (the digester's path for chunks with known-zero pages) equals
    /// the one-shot hash, whatever the cut points and lengths.
    @Test func streamingInPiecesEqualsOneShot() {
        let stream = XXH3Stream(seed: 0)
        for vector in Self.vectors {
            let bytes = Array(Self.sanityBuffer[0..<vector.length])
            for piece in [1, 7, 64, 256, 1000] {
                stream.reset(seed: vector.seed)
                bytes.withUnsafeBytes { raw in
                    var offset = 0
                    while offset < raw.count {
                        let count = min(piece, raw.count - offset)
                        stream.update(raw.baseAddress! + offset, count: count)
                        offset += count
                    }
                }
                #expect(stream.digest() == vector.hash, "length \(vector.length) seed \(vector.seed) in pieces of \(piece)")
            }
        }
    }
}
