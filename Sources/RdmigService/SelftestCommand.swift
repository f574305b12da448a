import ArgumentParser
import Foundation
import RdmigSystem
import RdmigTransport
import RdmigTransportConformance

struct SelftestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Run rdmig's built-in checks on this machine.",
        subcommands: [SelftestTransportCommand.self])
}

/// Runs the transport conformance suite from the `rdmig` binary itself: this is how the
/// `verbs` backend is checked where no test bundle exists (inside the Soft-RoCE guest).
struct SelftestTransportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "Run the transport conformance suite against a backend.")

    @Option(help: "Backend to check: tcp or verbs.")
    var backend: TransportBackendKind = .tcp

    @Option(help: "Local address both ends use (for verbs: an address on the RDMA device).")
    var host: String = "127.0.0.1"

    @Option(name: .customLong("large-transfer"), help: "Size of the large-transfer case.")
    var largeTransfer: ByteCount = .mebibytes(64)

    @Option(help: "How the backend waits for completions: event (completion channel, the default) or busy-poll.")
    var completion: TransportOptions.CompletionMode = .event

    @Option(name: .customLong("ipv6-host"), help: "IPv6 address for the IPv6 case (default ::1 next to 127.0.0.1; for verbs an address on the RDMA netdev, e.g. fe80::1%eth0).")
    var ipv6Host: String?

    @Option(name: .customLong("case"), help: "Run only these cases (repeatable).")
    var cases: [String] = []

    func run() throws {
        let selection = BackendChoice.select(endpoint: TransportEndpoint(host: host, port: 0), forced: backend)
        var environment = ConformanceEnvironment(backend: selection.backend, host: host, ipv6Host: ipv6Host)
        environment.largeTransferBytes = Int(largeTransfer.bytes)
        environment.options.completionMode = completion
        let chosen = cases.isEmpty ? TransportConformance.cases : try cases.map { name in
            guard let found = TransportConformance.case(named: name) else {
                throw ValidationError("no conformance case '\(name)': cases are \(TransportConformance.cases.map(\.name).joined(separator: ", "))")
            }
            return found
        }
        print("transport conformance: backend \(backend) on \(host), completion \(completion.rawValue) (\(selection.reason))")
        var passed = 0, failed = 0, skipped = 0
        for conformanceCase in chosen {
            let clock = ContinuousClock()
            let start = clock.now
            do {
                try conformanceCase.run(environment)
                passed += 1
                printFlushed("PASS \(conformanceCase.name) (\(formatFixed((clock.now - start).milliseconds, decimals: 0)) ms)")
            } catch let skip as ConformanceSkip {
                skipped += 1
                printFlushed("SKIP \(conformanceCase.name): \(skip.reason)")
            } catch {
                failed += 1
                printFlushed("FAIL \(conformanceCase.name): \(error)")
            }
        }
        print("\(passed) passed, \(failed) failed, \(skipped) skipped")
        var timersFailed = false
        if selection.kind == .verbs && cases.isEmpty {
            timersFailed = !checkVerbsTimers(environment)
        }
        if failed > 0 || timersFailed { throw ExitCode(1) }
    }

    /// Not a conformance case (tcp has no such timers): on one more verbs connection, asked
    /// for traffic class 0x68 (DSCP 26), both ends' QPs must carry the RNR timer and ACK
    /// timeout rdmig asks for and that traffic class. Prints one line.
    private func checkVerbsTimers(_ environment: ConformanceEnvironment) -> Bool {
        var options = environment.options
        let trafficClass: UInt8 = 0x68
        options.trafficClass = trafficClass
        let wanted = "RNR timer \(VerbsConnection.requestedRNRTimer), ACK timeout \(VerbsConnection.requestedAckTimeout), "
            + "traffic class \(trafficClass)"
        do {
            let peers = try ConformancePeers(environment, options: options)
            var ends: [String] = []
            var good = true
            for (name, connection) in [("client", peers.client), ("server", peers.server)] {
                guard let verbs = connection as? VerbsConnection else { continue }
                let rnr = verbs.responderRNRTimer.map(String.init) ?? "unknown"
                let ack = verbs.localAckTimeout.map(String.init) ?? "unknown"
                let tclass = verbs.trafficClass.map(String.init) ?? "unknown"
                ends.append("\(name) RNR timer \(rnr), ACK timeout \(ack), traffic class \(tclass)"
                    + (verbs.timerProblems.isEmpty ? "" : " (\(verbs.timerProblems.joined(separator: "; ")))"))
                good = good && verbs.responderRNRTimer == VerbsConnection.requestedRNRTimer
                    && verbs.localAckTimeout == VerbsConnection.requestedAckTimeout && verbs.trafficClass == trafficClass
            }
            printFlushed("\(good ? "PASS" : "FAIL") verbsQueuePairTimers: \(ends.joined(separator: "; ")) (wanted \(wanted))")
            return good
        } catch {
            printFlushed("FAIL verbsQueuePairTimers: \(error)")
            return false
        }
    }
}
