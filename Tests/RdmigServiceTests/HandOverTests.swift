#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigTestSupport
import Testing

/// The hand-over survives faults between READY and RESUMED: the source keeps its paused copy
/// until it knows the destination runs the guest, the destination holds its verified copy for
/// the source to come back, and what neither can learn is reported as unknown (exit 3) with
/// the source's copy paused — never zero copies, never two running.
@Suite(.serialized) struct HandOver {
    let workload = ["--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB", "--vf", "ib-sw:qps=100"]

    func destination(_ key: String, fault: String? = nil, _ extra: [String] = []) throws -> (RdmigProcess, UInt16) {
        let process = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "-v"] + extra,
                                       environment: fault.map { ["RDMIG_FAULT": $0] } ?? [:])
        return (process, try process.listeningPort())
    }

    func source(_ port: UInt16, _ key: String, fault: String? = nil, _ extra: [String] = []) throws -> RdmigProcess {
        try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "-v"] + workload + extra,
                         environment: fault.map { ["RDMIG_FAULT": $0] } ?? [:])
    }

    @Test func aLinkCutAtCommitIsResolvedForwardWhenTheSourceComesBack() throws {
        let key = try temporaryKeyFile()
        let (destination, port) = try destination(key, ["--resolve-timeout", "30s"])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let relay = try TamperingRelay(to: port, target: .cutAtCommit)
        let source = try source(relay.port, key, ["--resolve-timeout", "30s", "--backend", "tcp"])
        #expect(source.wait(timeout: 60) == 0, "source stderr:\n\(source.stderr)\ndestination stderr:\n\(destination.stderr)")
        #expect(relay.tamperedWithAFrame, "the relay never saw COMMIT")
        let sourceReport = try source.report()
        #expect(sourceReport["status"] as? String == "completed")
        #expect((sourceReport["guest-location"] as? String ?? "").contains("confirmed after the connection was lost"), "\(sourceReport)")
        #expect(destination.wait(timeout: 30) == 0, "destination stderr:\n\(destination.stderr)")
        let destinationReport = try destination.report()
        #expect((destinationReport["guest-location"] as? String ?? "").contains("committed on the source's RESOLVE"), "\(destinationReport)")
    }

    @Test func aDestinationSilentAfterReadyTellsTheReturningSourceTheGuestRunsThere() throws {
        let key = try temporaryKeyFile()
        // Silent for 5 s after READY, longer than the source waits for RESUMED (its 3 s peer
        // timeout): it resumes on COMMIT meanwhile, and RESUMED finds the source gone.
        let (destination, port) = try destination(key, fault: "dest-stall-after-ready=5", ["--resolve-timeout", "30s"])
        defer { destination.kill(); destination.wait(timeout: 10) }
        let source = try source(port, key, ["--resolve-timeout", "30s", "--peer-timeout", "3s"])
        #expect(source.wait(timeout: 60) == 0, "source stderr:\n\(source.stderr)\ndestination stderr:\n\(destination.stderr)")
        #expect((try source.report()["guest-location"] as? String ?? "").contains("confirmed after the connection was lost"))
        #expect(destination.wait(timeout: 40) == 0, "destination stderr:\n\(destination.stderr)")
        #expect(try destination.report()["guest-location"] as? String == "destination")
    }

    @Test func aDestinationKilledAfterReadyLeavesTheGuestPausedAndKnownOnTheSource() throws {
        let key = try temporaryKeyFile()
        let (destination, port) = try destination(key, fault: "dest-stall-after-ready")
        let source = try source(port, key, ["--resolve-timeout", "3s"])
        _ = try destination.waitForLine(containing: "rdmig fault: stalling at dest-stall-after-ready")
        destination.kill()
        #expect(source.wait(timeout: 60) == 3, "source stderr:\n\(source.stderr)")
        let report = try source.report()
        #expect((report["guest-location"] as? String ?? "").hasPrefix("unknown (paused on the source"), "\(report)")
    }

    @Test func aSourceKilledAfterReadyLeavesTheDestinationHoldingItsCopyThenUnknown() throws {
        let key = try temporaryKeyFile()
        let (destination, port) = try destination(key, ["--resolve-timeout", "2s"])
        let source = try source(port, key, fault: "source-stall-before-commit")
        _ = try source.waitForLine(containing: "rdmig fault: stalling at source-stall-before-commit")
        source.kill()
        #expect(destination.wait(timeout: 60) == 3, "destination stderr:\n\(destination.stderr)")
        let report = try destination.report()
        #expect((report["guest-location"] as? String ?? "").hasPrefix("unknown (not here"), "\(report)")
        #expect(destination.stderr.contains("holding the verified guest paused"))
    }
}
