#if canImport(Glibc)
import Glibc
#endif
import RdmigTestSupport
import Foundation
import Testing

/// Migrations striped over several page channels (`--channels`): each its own connection,
/// joined to the migration, with the link measured over all of them at setup.
@Suite(.serialized) struct PageChannels {
    @Test(arguments: [1, 2, 4])
    func aGuestWithAVFMigratesOverNChannelsAndIsVerified(channels: Int) throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "-v"])
        let address = "127.0.0.1:\(try destination.listeningPort())"
        let source = try RdmigProcess(["source", "--connect", address, "--json", "--key-file", key, "--channels", "\(channels)", "-v",
                                       "--guest-size", "256MiB", "--dirty-rate", "64MiB/s", "--working-set", "64MiB", "--vf", "ib-sw:qps=200"])
        #expect(source.wait() == 0, "source stderr:\n\(source.stderr)")
        #expect(destination.wait() == 0, "dest stderr:\n\(destination.stderr)")
        let sent = try source.report()
        let received = try destination.report()
        for report in [sent, received] {
            #expect(report["status"] as? String == "completed", "\(report)")
            #expect(report["verified"] as? Bool == true)
            #expect(report["channels"] as? Int == channels, "\(report)")
        }
        // Both sides count every page the channels carried, whichever channel carried it.
        #expect(sent["normal-pages"] as? Int == received["normal-pages"] as? Int, "source \(sent), destination \(received)")
        #expect(sent["zero-pages"] as? Int == received["zero-pages"] as? Int)
        // The destination's guest memory is bound to the NIC's node (here the only one).
        #expect(destination.stderr.contains("bound to NUMA node 0"), "dest stderr:\n\(destination.stderr)")
        if channels > 1 {
            #expect(destination.stderr.contains("\(channels) page channels joined"), "dest stderr:\n\(destination.stderr)")
        }
        // The bound is the final bytes at the link's measured rate, nothing else.
        let link = try #require(sent["link-bandwidth"] as? Double)
        #expect(link > 0, "\(sent)")
        #expect(source.stderr.contains("over \(channels) page channel"), "source stderr:\n\(source.stderr)")
        let finalBytes = Double(sent["final-bytes"] as? Int ?? -1)
        let bound = try #require(sent["downtime-lower-bound"] as? Double)
        #expect(abs(bound - finalBytes / link * 1000) <= 0.002, "downtime-lower-bound \(bound) ms for \(finalBytes) B at \(link) B/s")
        #expect((sent["precopy-bandwidth"] as? Double ?? 0) > 0, "\(sent)")
        // The VF's stop-copy state travelled beside the last pages, not after them.
        let laps = try #require(source.stderr.split(separator: "\n").first { $0.contains("switchover: pause") }, "source stderr:\n\(source.stderr)")
        #expect(laps.contains("‖ VF stop-copy") && laps.contains("in parallel"), "\(laps)")
    }

    @Test func aChannelCountOutOfRangeIsRefusedNamingTheFlagAndTheRange() throws {
        for value in ["0", "17", "many"] {
            let source = try RdmigProcess(["source", "--connect", "127.0.0.1:9", "--channels", value, "--guest-size", "64MiB"])
            #expect(source.wait() != 0)
            #expect(source.stderr.contains("--channels \(value)") && source.stderr.contains("use auto or 1-16"), "stderr:\n\(source.stderr)")
        }
        let config = try temporaryKeyFile() + ".toml"
        try "[transport]\nchannels = 99\n".write(toFile: config, atomically: true, encoding: .utf8)
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:9", "--config", config, "--guest-size", "64MiB"])
        #expect(source.wait() != 0)
        #expect(source.stderr.contains("[transport] channels = 99") && source.stderr.contains("use auto or 1-16"), "stderr:\n\(source.stderr)")
    }

    @Test func probeSaysHowManyChannelsASourceWouldAskForAndWhy() throws {
        // An empty config: the built-in default ("auto"), whatever RDMIG_TEST_CONFIG says.
        let defaults = try temporaryKeyFile() + ".toml"
        try "".write(toFile: defaults, atomically: true, encoding: .utf8)
        let probe = try RdmigProcess(["probe", "--json", "--address", "127.0.0.1", "--config", defaults])
        #expect(probe.wait() == 0, "stderr:\n\(probe.stderr)")
        let report = try probe.report()
        let selection = try #require((report["transport"] as? [[String: Any]])?.first)
        let channels = selection["channels"] as? String ?? ""
        let cpus = ProcessInfo.processInfo.activeProcessorCount
        #expect(channels.hasPrefix("\(min(max(cpus, 1), 8)) (auto: one per hot-path CPU"), "\(channels) with \(cpus) CPUs")
        let config = try temporaryKeyFile() + ".toml"
        try "[transport]\nchannels = 3\n".write(toFile: config, atomically: true, encoding: .utf8)
        let configured = try RdmigProcess(["probe", "--json", "--address", "127.0.0.1", "--config", config])
        #expect(configured.wait() == 0)
        let configuredChannels = try (configured.report()["transport"] as? [[String: Any]])?.first?["channels"] as? String
        #expect(configuredChannels == "3 (configured)", "\(String(describing: configuredChannels))")
    }

    /// A source that gives up while its page channels would be joining (here: stopped by
    /// SIGTERM right after its handshake) must not hold the destination for the peer timeout:
    /// the destination hears the ABORT on the first session and stops waiting for the others.
    @Test func aSourceThatGivesUpWhileChannelsJoinReleasesTheDestinationAtOnce() throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "--peer-timeout", "60s"])
        let address = "127.0.0.1:\(try destination.listeningPort())"
        let source = try RdmigProcess(["source", "--connect", address, "--json", "--key-file", key, "--channels", "4",
                                       "--guest-size", "64MiB"], environment: ["RDMIG_FAULT": "announce"])
        _ = try source.waitForLine(containing: "rdmig phase: handshake")
        let started = Date()
        kill(source.process.processIdentifier, SIGTERM)
        #expect(source.wait(timeout: 30) == 128 + SIGTERM, "source stderr:\n\(source.stderr)")
        #expect(destination.wait(timeout: 30) == 1, "dest stderr:\n\(destination.stderr)")
        #expect(Date().timeIntervalSince(started) < 10, "the destination waited \(Date().timeIntervalSince(started)) s")
        let report = try destination.report()
        #expect(report["guest-location"] as? String == "not here (incoming guest discarded)", "\(report)")
        #expect(try source.report()["guest-location"] as? String == "source (resumed)")
    }
}
