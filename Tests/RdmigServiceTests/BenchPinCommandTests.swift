#if canImport(Glibc)
import Glibc
#endif
import RdmigMigration
import Testing

@testable import RdmigService

@Suite("bench pin")
struct BenchPinCommandTests {
    @Test func badSizesRoundsAndThreadsAreRefusedNamingTheOption() {
        for (arguments, option) in [(["--size", "1000"], "--size"), (["--size", "512KiB"], "--size"),
                                    (["--rounds", "0"], "--rounds"), (["--threads", "0"], "--threads"),
                                    (["--threads", "65"], "--threads")] {
            do {
                _ = try BenchPinCommand.parse(arguments)
                Issue.record("\(arguments) was accepted")
            } catch {
                #expect(BenchPinCommand.message(for: error).contains(option), "\(arguments): \(BenchPinCommand.message(for: error))")
            }
        }
    }

    @Test func defaultsAreOneGibibyteAndFiveRounds() throws {
        let command = try BenchPinCommand.parse([])
        #expect(command.size.bytes == 1 << 30 && command.rounds == 5 && command.threads == nil)
    }

    /// Locking 128 MiB needs CAP_IPC_LOCK (root) or a memlock limit that large.
    static let mayLock128MiB = geteuid() == 0 || (GuestMemoryRegion.memoryLockLimit() ?? 0) >= 129 << 20

    @Test(.enabled(if: mayLock128MiB, "needs root or a memlock limit of 129 MiB (ulimit -l)"))
    func aSmallRunPinsOnBothThreadCounts() throws {
        let command = try BenchPinCommand.parse(["--size", "128MiB", "--rounds", "1", "--threads", "2", "--json"])
        try command.run()
    }
}
