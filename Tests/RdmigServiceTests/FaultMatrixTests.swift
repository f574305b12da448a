#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigTestSupport
import Testing

/// The fault matrix's CI subset (Tests/faults/matrix.py --quick): real migrations between two
/// network namespaces over a veth pair, struck at a phase by a signal or a link cut. The full
/// matrix is one command (`Tests/faults/matrix.py --output Tests/faults/RESULTS.md`, ~15 min).
@Suite(.serialized) struct FaultMatrix {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("faults/matrix.py").path

    /// Network namespaces and veth pairs need root and iproute2.
    static var available: Bool {
        geteuid() == 0 && ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains { FileManager.default.fileExists(atPath: $0) }
    }

    @Test(.enabled(if: FaultMatrix.available, "the fault matrix needs root and iproute2 (network namespaces, veth)"))
    func theQuickSubsetKeepsExactlyOneGuestInEveryCell() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", Self.script, "--quick", "--rdmig", RdmigProcess.executable.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        print(text)
        #expect(process.terminationStatus == 0, "\(text)")
        #expect(text.contains("4 of 4 cells ok"), "\(text)")
    }
}
