import Foundation

/// One run of `Tests/softroce/verbs-suite.sh` as a subprocess, its stdout and stderr merged in
/// order, as CI's log should show them.
struct VerbsSuiteRun {
    /// The script's own code for "QEMU cannot start here at all" (automake's SKIP code).
    static let skippedStatus: Int32 = 77

    let status: Int32
    let output: VerbsSuiteOutput

    /// The repository root, from this file's place in it (Tests/RdmigSoftRoCETests/).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `rdmig` that `swift build`/`swift test` put next to the test bundle (building every
    /// product is part of `swift test`). A release build for the guest would cost CI ~2 more
    /// minutes on 2 cores; the debug one passes the same cases and, on a quiet host, moves as
    /// much over rxe under TCG (measured; on a busy host it is slower, see Perf/README.md), and
    /// the ratio line names the build. RDMIG_SOFTROCE_RDMIG names another binary. A nested
    /// `swift build` is no option: SwiftPM holds the build folder's lock for all of `swift test`.
    static func rdmigBinary() -> URL {
        if let configured = ProcessInfo.processInfo.environment["RDMIG_SOFTROCE_RDMIG"], !configured.isEmpty {
            return URL(fileURLWithPath: configured)
        }
        return URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            .deletingLastPathComponent().appendingPathComponent("rdmig")
    }

    static func run(arguments: [String]) throws -> VerbsSuiteRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = [repositoryRoot.appendingPathComponent("Tests/softroce/verbs-suite.sh").path] + arguments
        process.currentDirectoryURL = repositoryRoot
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return VerbsSuiteRun(status: process.terminationStatus, output: VerbsSuiteOutput(String(decoding: data, as: UTF8.self)))
    }
}
