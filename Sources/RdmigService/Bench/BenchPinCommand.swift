import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import RdmigMigration
import RdmigSystem

/// How long the destination takes to map and pin a guest's memory, faulting it in on several
/// threads (what `rdmig dest` does) against one thread, in the same process and alternating.
struct BenchPinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pin",
        abstract: "Guest memory pinning: faulting in on several threads (as rdmig dest does) against one thread.")

    @Option(help: "Guest memory to map and pin each time.")
    var size: ByteCount = .mebibytes(1024)

    @Option(help: "Threads to fault in with (default: the CPUs this process may use, at most 8).")
    var threads: Int?

    @Option(help: "Rounds; each maps and pins once with each thread count, the order alternating.")
    var rounds = 5

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    struct Result: Codable {
        var bytes: UInt64
        var threads: Int
        var rounds: Int
        var milliseconds: Double
        var baselineMilliseconds: Double
        /// Time on `threads` threads over time on one: below 1 is faster.
        var ratio: Double
        var samples: [Double]
        var baselineSamples: [Double]
    }

    func validate() throws {
        guard size.bytes >= 1 << 20, size.bytes % 4096 == 0 else {
            throw ValidationError("--size \(size): at least 1MiB and a multiple of 4KiB")
        }
        guard rounds >= 1 else { throw ValidationError("--rounds \(rounds): at least 1") }
        if let threads, !(1...64).contains(threads) { throw ValidationError("--threads \(threads): 1 to 64") }
    }

    func run() throws {
        let threadCount = threads ?? min(max((try? SystemThread.currentAffinity().count) ?? 1, 1), 8)
        var samples: [Double] = []
        var baselineSamples: [Double] = []
        for round in 0..<rounds {
            for useThreads in round % 2 == 0 ? [true, false] : [false, true] {
                let milliseconds = try pinOnce(threads: useThreads ? threadCount : 1)
                if useThreads { samples.append(milliseconds) } else { baselineSamples.append(milliseconds) }
            }
        }
        let result = Result(bytes: size.bytes, threads: threadCount, rounds: rounds,
                            milliseconds: median(samples), baselineMilliseconds: median(baselineSamples),
                            ratio: median(samples) / median(baselineSamples),
                            samples: samples, baselineSamples: baselineSamples)
        if json {
            print(try JSONText.encode(result))
        } else {
            print("""
                pinning \(size.humanReadable) of anonymous guest memory, median of \(rounds) rounds
                  \(threadCount) thread\(threadCount == 1 ? "" : "s"): \(formatFixed(result.milliseconds, decimals: 1)) ms
                  1 thread:  \(formatFixed(result.baselineMilliseconds, decimals: 1)) ms
                  ratio:     \(formatFixed(result.ratio, decimals: 3))
                """)
        }
    }

    /// Maps, pins (faults in and locks) and unmaps `size` bytes; returns the pin's milliseconds.
    private func pinOnce(threads: Int) throws -> Double {
        let region = try GuestMemoryRegion(layout: GuestMemoryRegionLayout(id: 0, guestPhysicalBase: 0, length: size.bytes, pageSize: 4096))
        let clock = ContinuousClock()
        let start = clock.now
        try region.pin(threads: threads)
        let elapsed = clock.now - start
        region.unpin()
        return elapsed.milliseconds
    }
}
