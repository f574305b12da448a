import Foundation
import Testing
import RdmigSystem
@testable import RdmigMemory

@Suite struct MemoryConfigurationParsing {
    @Test func defaultsAreAutoWithA64MiBPoolOf64KiBSlabs() throws {
        let configuration = try MemoryConfiguration(settings: [:])
        #expect(configuration.node == .auto)
        #expect(configuration.hugePages == .auto)
        #expect(configuration.poolSize == .mebibytes(64))
        #expect(configuration.slabSize == .kibibytes(64))
        #expect(configuration.threadCPUs == .auto)
    }

    @Test func everyKeyIsRead() throws {
        let configuration = try MemoryConfiguration(settings: [
            "node": "1", "huge-pages": "2M", "pool-size": "256MiB", "slab-size": "1MiB", "thread-cpus": "2-3,6",
        ])
        #expect(configuration.node == .node(1))
        #expect(configuration.hugePages == .size2MiB)
        #expect(configuration.poolSize == .mebibytes(256))
        #expect(configuration.slabSize == .mebibytes(1))
        #expect(configuration.threadCPUs == .cpus([2, 3, 6]))
    }

    @Test func badValuesSayWhatToWrite() {
        func message(_ settings: [String: String]) -> String? {
            do {
                _ = try MemoryConfiguration(settings: settings)
                return nil
            } catch {
                return error.description
            }
        }
        #expect(message(["huge-pages": "big"]) == "huge pages 'big': use auto, off, 2M or 1G")
        #expect(message(["node": "first"]) == "node 'first': use auto or a node number such as 0")
        #expect(message(["node": "-1"]) == "node '-1': use auto or a node number such as 0")
        #expect(message(["thread-cpus": "3-1"]) == "thread CPUs '3-1': use auto or a CPU list such as 2-3 or 0,2,4")
        #expect(message(["pool-size": "lots"])
            == "pool size 'lots': 'lots' is not a size: write a number with an optional unit, e.g. 64KiB or 1GiB")
        #expect(message(["pool-size": "100KiB"]) == "pool size '100KiB': use a whole number (at least 1) of 64KiB slabs")
        #expect(message(["slab-size": "1000"]) == "slab size '1000B': use a multiple of 4 KiB, e.g. 64KiB")
        #expect(message(["hugepages": "off"])
            == "unknown key 'hugepages' in [memory]: use node, huge-pages, pool-size, slab-size, thread-cpus, guest-pinning")
        #expect(message(["guest-pinning": "lazy"]) == "guest pinning 'lazy': use auto, prefault or on-fault")
    }

    @Test func guestPinningSpellings() throws {
        #expect(try MemoryConfiguration(settings: ["guest-pinning": "on-fault"]).guestPinning == .onFault)
        #expect(try MemoryConfiguration(settings: ["guest-pinning": "prefault"]).guestPinning == .prefault)
        #expect(MemoryConfiguration().guestPinning == .auto)
    }

    @Test func hugePageSpellings() throws {
        #expect(try HugePagePolicy(parsing: "1GiB") == .size1GiB)
        #expect(try HugePagePolicy(parsing: " off ") == .off)
        #expect(try HugePagePolicy(parsing: "2m") == .size2MiB)
        #expect(throws: MemoryConfiguration.ParseError.badValue(setting: "huge pages", value: "4K", hint: "use auto, off, 2M or 1G")) {
            try HugePagePolicy(parsing: "4K")
        }
    }

    @Test func autoTakes1GiBPagesOnlyForWholeGiBPools() {
        #expect(HugePagePolicy.auto.candidates(forLength: 1 << 30) == [.huge1GiB, .huge2MiB, .base4KiB])
        #expect(HugePagePolicy.auto.candidates(forLength: 64 << 20) == [.huge2MiB, .base4KiB])
        #expect(HugePagePolicy.auto.candidates(forLength: 3 << 29) == [.huge2MiB, .base4KiB])
        #expect(HugePagePolicy.off.candidates(forLength: 1 << 30) == [.base4KiB])
        #expect(HugePagePolicy.size1GiB.candidates(forLength: 4096) == [.huge1GiB, .base4KiB])
    }

    @Test func jsonRoundTripKeepsTheConfTexts() throws {
        let configuration = MemoryConfiguration(
            node: .node(0), hugePages: .off, poolSize: .mebibytes(8), slabSize: .kibibytes(16), threadCPUs: .cpus([0, 1]))
        let data = try JSONEncoder().encode(configuration)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
        #expect(object == ["node": "0", "huge-pages": "off", "pool-size": "8MiB", "slab-size": "16KiB", "thread-cpus": "0-1"])
        #expect(try JSONDecoder().decode(MemoryConfiguration.self, from: data) == configuration)
    }
}

@Suite struct CPUListFormat {
    @Test func parsesRangesAndSinglesSortedWithoutDuplicates() throws {
        #expect(try CPUList.parse("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11])
        #expect(try CPUList.parse("5,1,1-2") == [1, 2, 5])
        #expect(try CPUList.parse("") == [])
        #expect(try CPUList.parse("\n") == [])
        #expect(throws: CPUList.ParseError(text: "1,,2")) { try CPUList.parse("1,,2") }
        #expect(throws: CPUList.ParseError(text: "a")) { try CPUList.parse("a") }
    }

    @Test func formatsTheShortestForm() {
        #expect(CPUList.format([0, 1, 2, 3, 8, 10, 11] as [Int32]) == "0-3,8,10-11")
        #expect(CPUList.format([7] as [Int]) == "7")
        #expect(CPUList.format([] as [Int]) == "none")
    }
}
