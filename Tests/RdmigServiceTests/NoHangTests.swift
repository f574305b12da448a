import Foundation
import RdmigTestSupport
import Testing

/// No migration hangs: one that stops making progress, or does not finish in its time, fails
/// with the reason while the guest keeps running on the source.
@Suite(.serialized) struct NoHang {
    @Test func aLinkThatGoesDeadInPreCopyFailsAfterTheProgressTimeout() throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let relay = try TamperingRelay(to: try destination.listeningPort(), target: .freezeInPreCopy)
        let started = Date()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(relay.port)", "--json", "--key-file", key, "--backend", "tcp",
                                       "--peer-timeout", "60s", "--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB",
                                       "--set", "progress-timeout=2s"])
        #expect(source.wait(timeout: 40) == 1, "source stderr:\n\(source.stderr)")
        #expect(relay.tamperedWithAFrame)
        let report = try source.report()
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        #expect((report["error-desc"] as? String ?? "").contains("timed out after 2.0 s"), "\(report)")
        // Well before the 60 s peer timeout (the close after the failure takes a few seconds).
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test func aMigrationThatDoesNotFinishInItsTimeFailsWithTheReason() throws {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let port = try destination.listeningPort()
        // Never converges on its own: 8 GiB/s of dirtying, a 1 ms limit, auto-converge in 1 % steps.
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key,
                                       "--guest-size", "64MiB", "--dirty-rate", "8GiB/s", "--working-set", "64MiB",
                                       "--downtime-limit", "1ms", "--max-iterations", "100000", "--set", "throttle-increment=1",
                                       "--set", "completion-timeout-per-gib=2s"])
        #expect(source.wait(timeout: 40) == 1, "source stderr:\n\(source.stderr)")
        let report = try source.report()
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        #expect((report["error-desc"] as? String ?? "").contains("completion-timeout-per-gib"), "\(report)")
    }
}
