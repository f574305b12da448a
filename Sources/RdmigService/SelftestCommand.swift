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

    @Option(name: .customLong("case"), help: "Run only these cases (repeatable).")
    var cases: [String] = []

    func run() throws {
        let selection = BackendChoice.select(endpoint: TransportEndpoint(host: host, port: 0), forced: backend)
        var environment = ConformanceEnvironment(backend: selection.backend, host: host)
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
        if failed > 0 { throw ExitCode(1) }
    }
}
