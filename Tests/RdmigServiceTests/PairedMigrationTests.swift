import RdmigTestSupport
import Foundation
import RdmigChannels
import Testing

/// Real `rdmig dest` and `rdmig source` processes migrating a synthetic guest over loopback.
/// Serialized: each pair uses both cores.
@Suite(.serialized) struct PairedMigration {
    /// Starts a destination on a free port; returns it and the source arguments to reach it.
    func startDestination(key: String, environment: [String: String] = [:], extra: [String] = []) throws -> (RdmigProcess, String) {
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key] + extra, environment: environment)
        let port = try destination.listeningPort()
        return (destination, "127.0.0.1:\(port)")
    }

    func source(_ address: String, key: String, _ arguments: [String], environment: [String: String] = [:]) throws -> RdmigProcess {
        try RdmigProcess(["source", "--connect", address, "--json", "--key-file", key] + arguments, environment: environment)
    }

    @Test func aOneGiBGuestWithDirtyingAndAnIBVFMigratesAndIsVerifiedOnTheDestination() throws {
        let key = try temporaryKeyFile()
        let (destination, address) = try startDestination(key: key)
        let source = try source(address, key: key, ["--guest-size", "1GiB", "--dirty-rate", "256MiB/s", "--working-set", "256MiB",
                                                    "--vf", "ib-sw:qps=1000", "--downtime-limit", "50ms"])
        #expect(source.wait() == 0, "source stderr:\n\(source.stderr)")
        #expect(destination.wait() == 0, "dest stderr:\n\(destination.stderr)")
        let sent = try source.report()
        let received = try destination.report()
        for report in [sent, received] {
            #expect(report["status"] as? String == "completed")
            #expect(report["verified"] as? Bool == true)
            #expect(report["guest-location"] as? String == "destination")
        }
        let vf = try #require(sent["vf-state-bytes"] as? [String: Any])
        #expect((vf["pre-copy"] as? Int ?? 0) > 0 && (vf["stop-copy"] as? Int ?? 0) > 0)
        // Every page of a 1 GiB guest went over once at least, as data or as a zero marker.
        let pages = (sent["normal-pages"] as? Int ?? 0) + (sent["zero-pages"] as? Int ?? 0)
        #expect(pages >= (1 << 30) / 4096)
        for report in [sent, received] {
            let normal = report["normal-pages"] as? Int ?? 0
            #expect(normal > 0 && report["normal-bytes"] as? Int == normal * 4096, "normal-bytes is normal-pages x 4 KiB: \(report)")
        }
        #expect((sent["downtime"] as? Double ?? -1) > 0)
        #expect(sent["iterations"] as? Int ?? 0 >= 2)
    }

    @Test func anIdleGuestNeedsOnePassAndASmallSwitchover() throws {
        let key = try temporaryKeyFile()
        let (destination, address) = try startDestination(key: key)
        let source = try source(address, key: key, ["--guest-size", "256MiB", "--dirty-rate", "0"])
        #expect(source.wait() == 0, "source stderr:\n\(source.stderr)")
        #expect(destination.wait() == 0)
        let report = try source.report()
        #expect(report["status"] as? String == "completed")
        #expect(report["verified"] as? Bool == true)
        // One full pass (a second, empty one when the first was too short to measure the
        // bandwidth), then an empty final pass.
        #expect((2...3).contains(report["iterations"] as? Int ?? 0), "\(report)")
        #expect(report["final-bytes"] as? Int == 0)
    }

    @Test func theUserfaultfdWriteProtectDirtyLogTracksTheGuestAsWell() throws {
        let key = try temporaryKeyFile()
        let (destination, address) = try startDestination(key: key)
        let source = try source(address, key: key, ["--guest-size", "128MiB", "--dirty-rate", "16MiB/s", "--working-set", "32MiB",
                                                    "--set", "dirty-log=userfaultfd"])
        #expect(source.wait() == 0, "source stderr:\n\(source.stderr)")
        #expect(destination.wait() == 0)
        let report = try source.report()
        #expect(report["status"] as? String == "completed")
        #expect(report["verified"] as? Bool == true)
    }

    @Test func aDirtyRateBeyondTheBandwidthIsThrottledUntilItConverges() throws {
        let key = try temporaryKeyFile()
        let (destination, address) = try startDestination(key: key)
        let source = try source(address, key: key, ["--guest-size", "512MiB", "--dirty-rate", "8GiB/s", "--working-set", "512MiB",
                                                    "--on-no-convergence", "throttle", "--downtime-limit", "20ms", "--set", "writers=2"])
        #expect(source.wait() == 0, "source stderr:\n\(source.stderr)")
        #expect(destination.wait() == 0)
        let report = try source.report()
        #expect(report["status"] as? String == "completed")
        #expect(report["verified"] as? Bool == true)
        #expect((report["cpu-throttle-percentage"] as? Int ?? 0) >= 20)
        let decisions = (report["passes"] as? [[String: Any]] ?? []).compactMap { $0["decision"] as? String }
        #expect(decisions.contains { $0.contains("throttle the guest") }, "decisions: \(decisions)")
    }

    @Test func aDirtyRateBeyondTheBandwidthIsForcedOverWhenConfigured() throws {
        let key = try temporaryKeyFile()
        let (destination, address) = try startDestination(key: key)
        let source = try source(address, key: key, ["--guest-size", "512MiB", "--dirty-rate", "8GiB/s", "--working-set", "512MiB",
                                                    "--on-no-convergence", "force", "--max-iterations", "3", "--downtime-limit", "1ms",
                                                    "--set", "writers=2"])
        #expect(source.wait() == 0, "source stderr:\n\(source.stderr)")
        #expect(destination.wait() == 0)
        let report = try source.report()
        #expect(report["status"] as? String == "completed")
        #expect(report["verified"] as? Bool == true)
        #expect(report["cpu-throttle-percentage"] as? Int == 0)
        let decisions = (report["passes"] as? [[String: Any]] ?? []).compactMap { $0["decision"] as? String }
        #expect(decisions.last?.contains("force switchover") == true, "decisions: \(decisions)")
    }
}

/// A peer that vanishes: the guest keeps running in exactly one place.
@Suite(.serialized) struct VanishingPeer {
    let workload = ["--guest-size", "256MiB", "--dirty-rate", "64MiB/s", "--working-set", "64MiB", "--vf", "ib-sw:qps=500"]

    func run(stall fault: String, in stalling: String) throws -> (source: RdmigProcess, destination: RdmigProcess) {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key],
                                           environment: stalling == "dest" ? ["RDMIG_FAULT": fault] : [:])
        let port = try destination.listeningPort()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "--peer-timeout", "20s"] + workload,
                                      environment: stalling == "source" ? ["RDMIG_FAULT": fault] : [:])
        let stalled = stalling == "dest" ? destination : source
        _ = try stalled.waitForLine(containing: "rdmig fault: stalling at \(fault)")
        stalled.kill()
        return (source, destination)
    }

    func expectSourceKeptTheGuest(_ source: RdmigProcess) throws {
        #expect(source.wait() == 1, "source stderr:\n\(source.stderr)")
        let report = try source.report()
        #expect(report["status"] as? String == "failed")
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        #expect((report["error-desc"] as? String ?? "").contains("disconnected"), "\(report)")
    }

    func expectDestinationDiscarded(_ destination: RdmigProcess) throws {
        #expect(destination.wait() == 1, "dest stderr:\n\(destination.stderr)")
        let report = try destination.report()
        #expect(report["status"] as? String == "failed")
        #expect(report["verified"] as? Bool == false)
        #expect(report["guest-location"] as? String == "not here (incoming guest discarded)")
        #expect(destination.stderr.contains("nothing runs here"))
    }

    @Test func destinationKilledDuringPreCopyLeavesTheGuestRunningOnTheSource() throws {
        let (source, _) = try run(stall: "dest-stall-in-precopy", in: "dest")
        try expectSourceKeptTheGuest(source)
    }

    @Test func destinationKilledDuringSwitchoverResumesTheGuestOnTheSource() throws {
        let (source, _) = try run(stall: "dest-stall-at-switchover", in: "dest")
        try expectSourceKeptTheGuest(source)
    }

    /// A destination that stops answering during stop-and-copy (here: it stalls on SWITCHOVER;
    /// a cut link looks the same to the source) must not keep the guest paused until the peer
    /// timeout: past the switchover budget the guest resumes on the source.
    @Test func aDestinationSilentInStopAndCopyGetsNoMoreThanTheSwitchoverBudget() throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key],
                                           environment: ["RDMIG_FAULT": "dest-stall-at-switchover"])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let port = try destination.listeningPort()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "--peer-timeout", "60s",
                                       "--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB",
                                       "--set", "switchover-budget=1s"])
        #expect(source.wait(timeout: 30) == 1, "source stderr:\n\(source.stderr)")
        let report = try source.report()
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        #expect((report["error-desc"] as? String ?? "").contains("switchover budget of 1000ms exhausted"), "\(report)")
        // Paused from the pause to the resume: the budget, plus the last wait's granularity.
        let paused = report["downtime"] as? Double ?? .infinity
        #expect(paused >= 1000 && paused < 1500, "the guest was paused \(paused) ms")
    }

    /// The link itself goes dead in stop-and-copy (a relay stops moving bytes both ways from
    /// SWITCHOVER on and keeps the connection open): the guest is paused no longer than the
    /// budget, then runs on the source again.
    @Test func aLinkThatGoesDeadInStopAndCopyGetsNoMoreThanTheSwitchoverBudget() throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let relay = try TamperingRelay(to: try destination.listeningPort(), target: .freezeAtSwitchover)
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(relay.port)", "--json", "--key-file", key, "--backend", "tcp",
                                       "--peer-timeout", "60s", "--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB",
                                       "--set", "switchover-budget=1s"])
        #expect(source.wait(timeout: 30) == 1, "source stderr:\n\(source.stderr)")
        #expect(relay.tamperedWithAFrame)
        let report = try source.report()
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        #expect((report["error-desc"] as? String ?? "").contains("switchover budget of 1000ms exhausted"), "\(report)")
        let paused = report["downtime"] as? Double ?? .infinity
        #expect(paused >= 1000 && paused < 1500, "the guest was paused \(paused) ms")
    }

    @Test func sourceKilledDuringPreCopyLeavesNothingRunningOnTheDestination() throws {
        let (_, destination) = try run(stall: "source-stall-in-precopy", in: "source")
        try expectDestinationDiscarded(destination)
    }

    @Test func sourceKilledDuringSwitchoverLeavesNothingRunningOnTheDestination() throws {
        let (_, destination) = try run(stall: "source-stall-after-pause", in: "source")
        try expectDestinationDiscarded(destination)
    }
}

/// Peers and people that say the wrong thing get told what is wrong.
@Suite(.serialized) struct BadInput {
    @Test func aSourceStartedBeforeItsDestinationWaitsForIt() throws {
        let key = try temporaryKeyFile()
        // Find a free port, then let the source try it before anything listens there.
        let probe = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--key-file", key])
        let port = try probe.listeningPort()
        probe.kill()
        probe.wait()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "--guest-size", "32MiB"])
        usleep(500_000)
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:\(port)", "--json", "--key-file", key])
        #expect(source.wait() == 0, "source stderr:\n\(source.stderr)")
        #expect(destination.wait() == 0)
        #expect(try source.report()["status"] as? String == "completed")
    }

    /// v2 is the release before XXH3 chunk digests (v3): its peers must be told, not migrated.
    @Test(arguments: [2, 99])
    func aPeerSpeakingAnotherProtocolVersionIsRefusedByName(version: Int) throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let port = try destination.listeningPort()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "--guest-size", "64MiB"],
                                      environment: ["RDMIG_FAULT": "hello-version=\(version)"])
        #expect(source.wait() == 1)
        let refused = try source.report()
        #expect(refused["status"] as? String == "failed")
        #expect((refused["error-desc"] as? String ?? "").contains("the destination refused: peer speaks rdmig protocol v\(version), this is v\(RdmigProtocol.version)"), "\(refused)")
        #expect(refused["guest-location"] as? String == "source (resumed)")
        // The destination logs the refusal and goes on waiting for a source it can serve.
        _ = try destination.waitForLine(containing: "peer speaks rdmig protocol v\(version), this is v3", timeout: 10)
        #expect(destination.process.isRunning)
    }

    @Test func peersWithDifferentKeysFailAuthenticationBeforeAnyMemoryIsExposed() throws {
        let destinationKey = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", destinationKey, "-v"])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let port = try destination.listeningPort()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", try temporaryKeyFile(), "--guest-size", "64MiB"])
        #expect(source.wait() == 1)
        let error = try source.report()["error-desc"] as? String ?? ""
        #expect(error.contains("the destination refused: authentication failed: the peers do not share the pre-shared key"), "\(error)")
        // An unauthenticated peer learns nothing of where the destination keeps its key.
        #expect(!error.contains(destinationKey), "\(error)")
        _ = try destination.waitForLine(containing: "authentication failed: the peers do not share the pre-shared key", timeout: 10)
        #expect(!destination.stderr.contains("mapped and pinned"), "no memory may be mapped for an unauthenticated peer")
        #expect(destination.process.isRunning, "a wrong key on one source must not end the destination")
    }

    @Test func garbageFromThePeerIsRefusedByNameNotACrash() throws {
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", try temporaryKeyFile()])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let port = try destination.listeningPort()
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(connected == 0)
        let garbage = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        _ = garbage.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        let line = try destination.waitForLine(containing: "refused the connection from 127.0.0.1", timeout: 10)
        close(fd)
        #expect(line.contains("is not an rdmig tcp transport"), "\(line)")
        #expect(destination.process.isRunning)
    }

    @Test func badCommandLineValuesNameTheProblem() throws {
        let size = try RdmigProcess(["source", "--connect", "127.0.0.1:1", "--guest-size", "12XB"])
        #expect(size.wait() != 0)
        #expect(size.stderr.contains("12XB"), "stderr:\n\(size.stderr)")
        let address = try RdmigProcess(["dest", "--listen", "localhost"])
        #expect(address.wait() != 0)
        #expect(address.stderr.contains("localhost"), "stderr:\n\(address.stderr)")
    }

    @Test func aVFIODeviceThatDoesNotExistIsNamedAndNothingIsMigrated() throws {
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:1", "--json", "--key-file", try temporaryKeyFile(),
                                       "--guest-size", "16MiB", "--vf", "vfio:/dev/vfio/devices/vfio-none"])
        #expect(source.wait() == 1)
        let report = try source.report()
        #expect((report["error-desc"] as? String ?? "").contains("no VFIO device at /dev/vfio/devices/vfio-none"), "\(report)")
    }

    @Test func keygenWritesAPrivateKeyAndNeverOverwritesOneUnasked() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rdmig-keygen-\(UUID().uuidString)/psk").path
        #expect(try RdmigProcess(["keygen", path]).wait() == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let first = try String(contentsOfFile: path, encoding: .utf8)
        #expect(first.count == 65, "64 hex digits and a newline")
        let again = try RdmigProcess(["keygen", path])
        #expect(again.wait() != 0)
        #expect(again.stderr.contains("already exists"), "stderr:\n\(again.stderr)")
        #expect(try String(contentsOfFile: path, encoding: .utf8) == first)
        #expect(try RdmigProcess(["keygen", "--force", path]).wait() == 0)
        #expect(try String(contentsOfFile: path, encoding: .utf8) != first)
    }

    @Test func anUnknownConfigKeyIsRefusedWithTheKnownOnes() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rdmig-\(UUID().uuidString).toml").path
        try "[migration]\ndowntime-limt = \"50ms\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:1", "--config", path])
        #expect(source.wait() != 0)
        #expect(source.stderr.contains("unknown key 'downtime-limt' in [migration]"), "stderr:\n\(source.stderr)")
        #expect(source.stderr.contains("downtime-limit"))
    }

    @Test func aClosedPortIsReportedAndTheGuestStaysOnTheSource() throws {
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:1", "--json", "--key-file", try temporaryKeyFile(),
                                       "--guest-size", "16MiB", "--connect-timeout", "300ms"])
        #expect(source.wait() == 1)
        let report = try source.report()
        #expect((report["error-desc"] as? String ?? "").contains("refused"), "\(report)")
        #expect(report["guest-location"] as? String == "source (resumed)")
    }
}
