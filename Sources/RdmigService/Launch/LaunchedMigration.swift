#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigSystem

/// `rdmig dest` and `rdmig source` in QEMU mode, started by `rdmig qemu-launch` as children
/// of its own executable, exactly as a person would start them (README "QEMU mode").
/// The destination's stderr goes through a log file the launcher copies to its own stderr
/// (it reads the port from "listening on"); the source's stderr is the launcher's (its
/// progress line included). Both write their reports to files in the run directory.
struct LaunchedMigration {
    struct Outcome: Sendable {
        let sourceEnding: ChildProcess.Termination
        let destinationEnding: ChildProcess.Termination
        /// What each wrote on stdout: its JSON report with --json, else nothing.
        let sourceOutput: String
        let destinationOutput: String
        let destinationCommand: [String]
        let sourceCommand: [String]

        var succeeded: Bool { sourceEnding.succeeded && destinationEnding.succeeded }
    }

    let rdmig: String
    let directory: String
    /// `dest` and its options but `--listen` (added here).
    let destinationArguments: [String]
    /// `source` and its options but `--connect` (added here).
    let sourceArguments: [String]
    /// 0: the destination picks a free one and says which.
    let port: UInt16

    var destinationOutputPath: String { directory + "/dest.out" }
    var destinationLogPath: String { directory + "/dest.log" }
    var sourceOutputPath: String { directory + "/source.out" }

    static let listenTimeout: Duration = .seconds(30)

    /// Runs the pair to its end. On an interrupt (or any error) both children are ended
    /// before this throws.
    func run() async throws -> Outcome {
        let log = open(destinationLogPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else {
            throw RdmigCommandError("cannot create \(destinationLogPath): \(SystemCallError(call: "open", errno: errno))")
        }
        let destinationCommand = destinationArguments + ["--listen", "127.0.0.1:\(port)"]
        let destination: ChildProcess
        do {
            defer { close(log) }
            destination = try ChildProcess(
                executable: rdmig, arguments: destinationCommand, stdin: .null,
                stdout: .file(destinationOutputPath), stderr: .descriptor(log))
        } catch {
            throw RdmigCommandError("cannot start \(rdmig) dest: \(error)")
        }
        let follower = try LogFollower(path: destinationLogPath)
        var source: ChildProcess?
        do {
            let chosenPort = try await waitForListening(destination, follower: follower)
            let sourceCommand = sourceArguments + ["--connect", "127.0.0.1:\(chosenPort)"]
            let started: ChildProcess
            do {
                started = try ChildProcess(
                    executable: rdmig, arguments: sourceCommand, stdin: .null,
                    stdout: .file(sourceOutputPath), stderr: .inherit)
            } catch {
                throw RdmigCommandError("cannot start \(rdmig) source: \(error)")
            }
            source = started
            var sourceEnding: ChildProcess.Termination
            while true {
                follower.pump()
                // Checked first: a terminal's Ctrl-C reaches the children too, and their end
                // is then the interrupt's, not a failed migration.
                try InterruptSignal.check()
                if let ending = started.poll() {
                    sourceEnding = ending
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            // A completed source means the destination is finishing too; a failed one may have
            // failed before connecting, and then the destination would wait for a peer forever.
            let grace: Duration = sourceEnding.succeeded ? .seconds(30) : .seconds(5)
            let deadline = ContinuousClock.now + grace
            var destinationEnding = destination.poll()
            while destinationEnding == nil && ContinuousClock.now < deadline {
                follower.pump()
                try InterruptSignal.check()
                try await Task.sleep(for: .milliseconds(50))
                destinationEnding = destination.poll()
            }
            if destinationEnding == nil {
                FileHandle.standardError.write(Data("rdmig qemu-launch: rdmig dest still runs \(grace) after rdmig source ended (\(sourceEnding)): stopping it\n".utf8))
                destinationEnding = await LaunchedMigration.end(destination)
            }
            follower.pump()
            sourceEnding = started.poll() ?? sourceEnding
            return Outcome(
                sourceEnding: sourceEnding, destinationEnding: destinationEnding!,
                sourceOutput: (try? String(contentsOfFile: sourceOutputPath, encoding: .utf8)) ?? "",
                destinationOutput: (try? String(contentsOfFile: destinationOutputPath, encoding: .utf8)) ?? "",
                destinationCommand: destinationCommand, sourceCommand: sourceCommand)
        } catch {
            if let source { _ = await LaunchedMigration.end(source) }
            _ = await LaunchedMigration.end(destination)
            follower.pump()
            throw error
        }
    }

    /// The port from "rdmig dest: listening on 127.0.0.1:PORT (...)".
    static func listeningPort(in text: String) -> UInt16? {
        guard let match = text.firstMatch(of: /listening on \S*:(\d+)/) else { return nil }
        return UInt16(match.output.1)
    }

    private func waitForListening(_ destination: ChildProcess, follower: LogFollower) async throws -> UInt16 {
        let deadline = ContinuousClock.now + LaunchedMigration.listenTimeout
        while true {
            follower.pump()
            if let port = LaunchedMigration.listeningPort(in: follower.text) { return port }
            if let ending = destination.poll() {
                follower.pump()
                throw RdmigCommandError("rdmig dest ended (\(ending)) before it listened; its messages are above and in \(destinationLogPath)")
            }
            try InterruptSignal.check()
            guard ContinuousClock.now < deadline else {
                _ = await LaunchedMigration.end(destination)
                throw RdmigCommandError("rdmig dest did not listen within \(LaunchedMigration.listenTimeout); see \(destinationLogPath)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// SIGTERM, then SIGKILL after 5 s.
    static func end(_ child: ChildProcess) async -> ChildProcess.Termination {
        if let ending = child.poll() { return ending }
        child.signal(SIGTERM)
        if let ending = await child.wait(timeout: .seconds(5)) { return ending }
        child.signal(SIGKILL)
        return await child.wait(timeout: .seconds(5)) ?? .signalled(SIGKILL)
    }
}
