import RdmigTestSupport
import Foundation
import Testing

/// A destination that serves for weeks (`rdmig dest --keep-serving`) must give back what each
/// migration took — pinned guest memory, threads, descriptors — whatever the outcome.
@Suite(.serialized) struct KeepServing {
    /// What a process holds, from /proc/PID/status and /proc/PID/fd.
    struct Usage: CustomStringConvertible {
        var lockedKiB: Int
        var residentKiB: Int
        /// rdmig's own threads.
        var threads: Int
        var descriptors: Int
        /// The threads' names (/proc/PID/task/*/comm), to say which one a leak is.
        var threadNames: [String]

        init(pid: Int32) throws {
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            func field(_ name: String) throws -> Int {
                guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
                      let value = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap({ Int($0) }) else {
                    throw ProcessFailure("no \(name) in /proc/\(pid)/status")
                }
                return value
            }
            lockedKiB = try field("VmLck")
            residentKiB = try field("VmRSS")
            _ = try field("Threads")
            descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count
            threadNames = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).sorted().map {
                ((try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8)) ?? "?")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }
            // rdmig names every thread it starts "rdmig-…" (the main thread is "rdmig"); the
            // others are libdispatch's worker pool (async/await runs there), which starts and
            // reaps its threads on its own clock, so counting them made the test flaky (3 → 4
            // on a fresh CI machine) without saying anything about rdmig.
            threads = threadNames.filter { $0.hasPrefix("rdmig") }.count
        }

        var description: String {
            "VmLck \(lockedKiB) kB, VmRSS \(residentKiB / 1024) MiB, \(threads) rdmig threads (all: \(threadNames.joined(separator: ", "))), \(descriptors) fds"
        }
    }

    enum Step {
        case completes([String])
        /// The source holds another pre-shared key: refused at authentication.
        case wrongKey
        /// The source (with a VF) is killed at a fault point: in pre-copy, after the
        /// destination mapped, pinned and exported the guest and started its digest and VF
        /// state threads, or with the guest paused, while the VF state loader waits for the
        /// stop-copy state.
        case sourceKilled(at: String)
    }

    static let guestBytes = 64 << 20
    static let guest = ["--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB"]
    static let vf = ["--vf", "ib-sw:qps=200"]

    @Test func tenMigrationsInARowGiveBackTheirMemoryThreadsAndDescriptors() throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "--keep-serving"])
        defer {
            destination.kill()
            destination.wait()
        }
        let address = "127.0.0.1:\(try destination.listeningPort())"
        let pid = destination.process.processIdentifier
        // Completed ones with and without a VF (its state loader has a thread of its own), a
        // refused source and vanished ones; the first warms up the allocator and the thread
        // pools, so it is the baseline.
        let plan: [Step] = [.completes(Self.guest), .completes(Self.guest + Self.vf), .wrongKey, .completes(Self.guest),
                            .sourceKilled(at: "source-stall-in-precopy"), .completes(Self.guest + Self.vf),
                            .sourceKilled(at: "source-stall-after-pause"), .wrongKey,
                            .completes(Self.guest + Self.vf), .completes(Self.guest)]
        var baseline: Usage?
        var reports = 0
        for (index, step) in plan.enumerated() {
            let expected: String?
            switch step {
            case .completes(let arguments):
                let source = try RdmigProcess(["source", "--connect", address, "--json", "--key-file", key] + arguments)
                #expect(source.wait() == 0, "migration \(index + 1): source stderr:\n\(source.stderr)")
                expected = "completed"
            case .wrongKey:
                let source = try RdmigProcess(["source", "--connect", address, "--json", "--key-file", try temporaryKeyFile()] + Self.guest)
                #expect(source.wait() == 1, "migration \(index + 1): source stderr:\n\(source.stderr)")
                // Refused in the handshake: logged, no migration report.
                expected = nil
            case .sourceKilled(let fault):
                let source = try RdmigProcess(["source", "--connect", address, "--json", "--key-file", key] + Self.guest + Self.vf,
                                              environment: ["RDMIG_FAULT": fault])
                _ = try source.waitForLine(containing: "rdmig fault: stalling at \(fault)")
                source.kill()
                source.wait()
                expected = "failed"
            }
            if let expected {
                reports += 1
                let report = try #require(try destination.waitForReports(reports).last)
                #expect(report["status"] as? String == expected, "migration \(index + 1): \(report)")
            }
            if index == 0 { baseline = try settled(pid) { _ in false } }
        }
        let start = try #require(baseline)
        // RSS may stay above the baseline by what the allocator keeps cached and by pages of
        // libraries touched late, but not by a guest: 1.5 guests of slack is far below the
        // 7 × 64 MiB a leak of every mapped guest adds, and above the few MiB measured after the fix.
        let residentSlackKiB = Self.guestBytes * 3 / 2 / 1024
        func returned(_ usage: Usage) -> Bool {
            usage.lockedKiB <= start.lockedKiB + 4 && usage.threads == start.threads && usage.descriptors == start.descriptors
                && usage.residentKiB <= start.residentKiB + residentSlackKiB
        }
        let end = try settled(pid, until: returned)
        print("keep-serving after migration 1: \(start); after migration \(plan.count): \(end)")
        // Between migrations an idle destination pins nothing (before the fix the first
        // guest was still pinned here: VmLck 65536 kB).
        #expect(start.lockedKiB == 0, "pinned memory after the first migration: \(start)")
        #expect(end.lockedKiB <= start.lockedKiB + 4, "pinned memory grew: \(start) → \(end)")
        #expect(end.threads == start.threads, "threads grew: \(start) → \(end)")
        #expect(end.descriptors == start.descriptors, "descriptors grew: \(start) → \(end)")
        #expect(end.residentKiB <= start.residentKiB + residentSlackKiB, "resident memory grew: \(start) → \(end)")
    }

    /// The usage once `done` holds, or after 3 s: the report is printed as the migration ends,
    /// and its last threads may still be finishing.
    func settled(_ pid: Int32, until done: (Usage) -> Bool) throws -> Usage {
        let deadline = Date(timeIntervalSinceNow: 3)
        var usage = try Usage(pid: pid)
        while !done(usage) && Date() < deadline {
            usleep(100_000)
            usage = try Usage(pid: pid)
        }
        return usage
    }
}

/// A guest bigger than the destination's limit is refused before anything is mapped.
@Suite struct GuestSizeCap {
    @Test func aGuestOverMaxGuestSizeIsRefusedNamingBothSizesAndNothingIsMapped() throws {
        let key = try temporaryKeyFile()
        let config = (key as NSString).deletingLastPathComponent + "/rdmig.toml"
        try "[service]\nmax-guest-size = \"32MiB\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "--config", config, "-v"])
        let port = try destination.listeningPort()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "--guest-size", "64MiB"])
        #expect(source.wait() == 1)
        #expect(destination.wait() == 1)
        let refused = try destination.report()
        let reason = refused["error-desc"] as? String ?? ""
        #expect(reason.contains("the guest's 64.00 MiB (67108864 bytes) exceed this destination's limit of 32.00 MiB (33554432 bytes: [service] max-guest-size)"),
                "\(refused)")
        #expect(!destination.stderr.contains("mapped and pinned"), "nothing may be mapped for a guest over the limit")
        #expect(try source.report()["guest-location"] as? String == "source (resumed)")
    }
}
