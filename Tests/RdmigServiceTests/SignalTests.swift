#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigTestSupport
import Testing

/// SIGINT, SIGTERM and SIGHUP on either service: before COMMIT an orderly abort with the
/// guest resumed on the source and a report from both sides; nothing runs on the destination.
@Suite(.serialized) struct Signals {
    /// A migration that goes on for a while: the guest dirties faster than loopback moves, and
    /// auto-converge creeps up one per cent every two passes towards a 1 ms downtime.
    func startLongMigration() throws -> (source: RdmigProcess, destination: RdmigProcess) {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key])
        let port = try destination.listeningPort()
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "-v",
                                       "--guest-size", "256MiB", "--dirty-rate", "8GiB/s", "--working-set", "256MiB",
                                       "--max-iterations", "1000", "--downtime-limit", "1ms", "--set", "throttle-increment=1",
                                       "--vf", "ib-sw:qps=100"])
        _ = try source.waitForLine(containing: "iteration 2:", timeout: 60)
        return (source, destination)
    }

    func expectOrderlyAbort(source: RdmigProcess, destination: RdmigProcess, sourceExit: Int32, destinationExit: Int32,
                            cancelled: RdmigProcess) throws {
        #expect(source.wait(timeout: 30) == sourceExit, "source stderr:\n\(source.stderr)")
        #expect(destination.wait(timeout: 30) == destinationExit, "destination stderr:\n\(destination.stderr)")
        let sourceReport = try source.report()
        #expect(sourceReport["guest-location"] as? String == "source (resumed)", "\(sourceReport)")
        let destinationReport = try destination.report()
        #expect(destinationReport["guest-location"] as? String == "not here (incoming guest discarded)", "\(destinationReport)")
        let stopped = try cancelled.report()
        #expect(stopped["status"] as? String == "cancelled", "\(stopped)")
        #expect((stopped["error-desc"] as? String ?? "").contains("stopped by SIG"), "\(stopped)")
    }

    @Test(arguments: [SIGTERM, SIGINT, SIGHUP])
    func aSignalToTheSourceInPreCopyResumesTheGuestThereWithAReport(signal: Int32) throws {
        let (source, destination) = try startLongMigration()
        kill(source.process.processIdentifier, signal)
        try expectOrderlyAbort(source: source, destination: destination, sourceExit: 128 + signal, destinationExit: 1, cancelled: source)
    }

    @Test func aSignalToTheDestinationInPreCopyDiscardsItsCopyAndTheSourceResumes() throws {
        let (source, destination) = try startLongMigration()
        kill(destination.process.processIdentifier, SIGTERM)
        try expectOrderlyAbort(source: source, destination: destination, sourceExit: 1, destinationExit: 128 + SIGTERM, cancelled: destination)
        #expect((try source.report()["error-desc"] as? String ?? "").contains("stopped by SIGTERM"))
    }

    @Test func aSignalToAnIdleKeepServingDestinationStopsItCleanly() throws {
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--key-file", try temporaryKeyFile(), "--keep-serving"])
        _ = try destination.listeningPort()
        kill(destination.process.processIdentifier, SIGTERM)
        #expect(destination.wait(timeout: 10) == 0, "\(destination.stderr)")
        #expect(destination.stderr.contains("SIGTERM: no longer accepting migrations"))
    }
}
