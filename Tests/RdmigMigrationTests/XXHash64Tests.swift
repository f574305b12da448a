import Testing
@testable import RdmigMigration

/// Reference values from the `xxhash` Python package (the C reference implementation).
@Suite struct XXHash64Tests {
    @Test func matchesTheReferenceImplementation() {
        #expect(XXHash64.hash([UInt8](), seed: 0) == 0xEF46_DB37_51D8_E999)
        #expect(XXHash64.hash(Array("a".utf8), seed: 0) == 0xD24E_C4F1_A98C_6E5B)
        #expect(XXHash64.hash(Array("abc".utf8), seed: 0) == 0x44BC_2CF5_AD77_0999)
        #expect(XXHash64.hash(Array("abc".utf8), seed: 1) == 0xBEA9_CA81_9932_8908)
        #expect(XXHash64.hash((0..<256).map { UInt8($0) }, seed: 0) == 0x1FAC_BE84_06CD_904B)
        #expect(XXHash64.hash((0..<37).map { UInt8($0) }, seed: 7) == 0x69E0_C889_396A_FAF7)
        #expect(XXHash64.hash([UInt8](repeating: 0, count: 4096), seed: 0) == 0xAC86_9B6F_32D8_BBDB)
    }
}
