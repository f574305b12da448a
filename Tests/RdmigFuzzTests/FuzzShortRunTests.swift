import Foundation
import RdmigChannels
import RdmigFuzzTargets
import Testing

/// The short fuzz run of the suite, without libFuzzer: every target's body (the one
/// libFuzzer runs) over the committed corpus, the seeds, and a fixed number of mutations of
/// them from a fixed RNG seed, so a failure reproduces exactly. The long runs are libFuzzer's
/// (Tests/fuzz/README.md).
@Suite struct FuzzShortRunTests {
    static let mutationsPerTarget = 4000
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fuzz/corpus")

    static func committedCorpus(of target: FuzzTarget) -> [[UInt8]] {
        let directory = corpus.appendingPathComponent(target.rawValue)
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.sorted().compactMap { FileManager.default.contents(atPath: directory.appendingPathComponent($0).path) }.map(Array.init)
    }

    @Test(arguments: FuzzTarget.allCases)
    func corpusAndMutations(_ target: FuzzTarget) throws {
        let committed = Self.committedCorpus(of: target)
        #expect(!committed.isEmpty, "no committed corpus for \(target.rawValue) in \(Self.corpus.path)")
        let starts = committed + target.seeds
        for input in starts {
            try target.run(input)
        }
        var random = SplitMix64(seed: 0x5EED_0000 &+ UInt64(target.rawValue.utf8.count))
        for _ in 0..<Self.mutationsPerTarget {
            let input = Mutator.mutate(starts[Int(random.next() % UInt64(starts.count))], others: starts, random: &random)
            do {
                try target.run(input)
            } catch {
                Issue.record("\(error)\ninput: \(input.map { String($0) }.joined(separator: ","))")
                return
            }
        }
    }

    /// The seeds are what rdmig sends: each decodes (a seed the decoder refuses would start
    /// the fuzzer from nothing).
    @Test func seedFramesDecode() throws {
        for frame in FuzzTarget.controlFrame.seeds.dropLast() {
            _ = try frame.withUnsafeBytes { try ControlFrame.decode($0, as: MigrationMessage.self) }
        }
    }
}

/// Sebastiano Vigna's SplitMix64: small, fast, and the same sequence on every machine.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ bound: Int) -> Int { bound <= 0 ? 0 : Int(next() % UInt64(bound)) }
}

/// A few of libFuzzer's mutations (bit flips, interesting integers, erase, insert, copy,
/// splice), one to four at a time.
enum Mutator {
    static let interesting: [UInt64] = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x1_0000, 0x7FFF_FFFF, 0x8000_0000,
                                        0xFFFF_FFFF, 0x1_0000_0000, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF]

    static func mutate(_ seed: [UInt8], others: [[UInt8]], random: inout SplitMix64) -> [UInt8] {
        var bytes = seed
        for _ in 0...random.below(4) {
            switch random.below(7) {
            case 0 where !bytes.isEmpty:
                bytes[random.below(bytes.count)] ^= UInt8(1) << UInt8(random.below(8))
            case 1 where !bytes.isEmpty:
                bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: interesting[random.below(interesting.count)])
            case 2:
                let width = [2, 4, 8][random.below(3)]
                guard bytes.count >= width else { break }
                var value = interesting[random.below(interesting.count)]
                let at = random.below(bytes.count - width + 1)
                for index in 0..<width {
                    bytes[at + index] = UInt8(truncatingIfNeeded: value)
                    value >>= 8
                }
            case 3 where !bytes.isEmpty:
                let start = random.below(bytes.count)
                bytes.removeSubrange(start..<min(bytes.count, start + 1 + random.below(16)))
            case 4:
                let inserted = (0..<(1 + random.below(8))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                bytes.insert(contentsOf: inserted, at: random.below(bytes.count + 1))
            case 5 where !bytes.isEmpty:
                let start = random.below(bytes.count)
                let piece = bytes[start..<min(bytes.count, start + 1 + random.below(32))]
                bytes.insert(contentsOf: piece, at: random.below(bytes.count + 1))
            default:
                let other = others[random.below(others.count)]
                let cut = random.below(bytes.count + 1)
                bytes = Array(bytes[..<cut]) + other[random.below(other.count + 1)...]
            }
        }
        return bytes
    }
}
