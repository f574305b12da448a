import Testing
@testable import RdmigSystem

@Suite struct ByteCountParsing {
    @Test func binaryAndDecimalUnits() throws {
        #expect(try ByteCount(parsing: "64KiB").bytes == 65536)
        #expect(try ByteCount(parsing: "1GiB").bytes == 1 << 30)
        #expect(try ByteCount(parsing: "1GB").bytes == 1_000_000_000)
        #expect(try ByteCount(parsing: "4096").bytes == 4096)
        #expect(try ByteCount(parsing: "2M").bytes == 2 << 20)
        #expect(try ByteCount(parsing: "1.5GiB").bytes == 3 << 29)
    }

    @Test func badSizesNameTheProblem() {
        #expect(throws: ByteCount.ParseError.unknownUnit("XB", in: "12XB")) { try ByteCount(parsing: "12XB") }
        #expect(throws: ByteCount.ParseError.notANumber("lots")) { try ByteCount(parsing: "lots") }
        #expect(throws: ByteCount.ParseError.empty) { try ByteCount(parsing: " ") }
        #expect(throws: ByteCount.ParseError.tooLarge("99999999TiB")) { try ByteCount(parsing: "99999999TiB") }
    }

    @Test func descriptionIsTheShortestExactForm() {
        #expect(ByteCount(65536).description == "64KiB")
        #expect(ByteCount(1 << 30).description == "1GiB")
        #expect(ByteCount(1536).description == "1536B")
    }

    @Test func ratesAndDurations() throws {
        #expect(try ByteRate(parsing: "256MiB/s").bytesPerSecond == 256 << 20)
        #expect(try DurationParser.parse("50ms") == .milliseconds(50))
        #expect(try DurationParser.parse("1.5s") == .milliseconds(1500))
        #expect(try DurationParser.parse("300us") == .microseconds(300))
        #expect(throws: DurationParser.ParseError.invalid("fast")) { try DurationParser.parse("fast") }
    }
}

@Suite struct FixedPointFormatting {
    @Test func roundsToTheDecimalsAsked() {
        #expect(formatFixed(1234.56, decimals: 1) == "1234.6")
        #expect(formatFixed(-0.25, decimals: 2) == "-0.25")
        #expect(formatFixed(3, decimals: 0) == "3")
        #expect(formatFixed(.infinity, decimals: 1) == "inf")
    }

    /// Found by the qmp-message fuzz target (Tests/fuzz/corpus/qmp-message/regression-mbps-huge):
    /// QEMU's `mbps` of 1.2e47 in a query-migrate reply trapped converting to UInt64 while
    /// the reply's summary was formatted for the log.
    @Test func valuesBeyondUInt64AreWrittenNotTrapped() {
        #expect(formatFixed(1.23e47, decimals: 1) == "1.23e+47")
        #expect(formatFixed(-1.8446744073709552e19, decimals: 0) == "-1.8446744073709552e+19")
        #expect(formatFixed(1.8446744073709550e18, decimals: 1) == "1844674407370955008.0")
        for exponent in 15...19 {
            for mantissa in stride(from: 1.0, to: 10.0, by: 0.37) {
                _ = formatFixed(mantissa * pow10(exponent) - 1, decimals: 3)
            }
        }
    }

    func pow10(_ exponent: Int) -> Double { (0..<exponent).reduce(1.0) { value, _ in value * 10 } }
}

@Suite struct CRC32CChecksum {
    @Test func knownVectors() {
        // RFC 3720 (iSCSI) appendix B.4 test vectors.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func continuingEqualsWhole() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = CRC32C.checksum(bytes)
        let first = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<333])) }
        let both = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[333...]), continuing: first) }
        #expect(both == whole)
    }
}

@Suite struct SystemThreads {
    @Test func threadPinnedToCPUZeroReportsThatAffinity() throws {
        let result = ResultBox()
        let thread = try SystemThread(name: "pin-test", cpus: [0]) {
            result.value = (try? SystemThread.currentAffinity()) ?? []
        }
        thread.join()
        #expect(result.value == [0])
    }

    @Test func failedCallCarriesErrnoAndName() {
        let error = SystemCallError(call: "open", errno: 2, context: "/nonexistent")
        #expect(error.description == "open failed: No such file or directory (ENOENT): /nonexistent")
    }
}

final class ResultBox: @unchecked Sendable {
    var value: [Int32] = []
}
