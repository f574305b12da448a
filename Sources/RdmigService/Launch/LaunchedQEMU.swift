#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigQEMU
import RdmigSystem

/// A QEMU that `rdmig qemu-launch` started: the child process (in a process group of its
/// own, so a terminal's Ctrl-C reaches the launcher, which then quits it), its files, and a
/// QMP connection on its control socket (the other socket is for `rdmig source|dest`).
final class LaunchedQEMU: Sendable {
    enum Role: String, Sendable {
        case source
        case destination

        var directoryName: String { self == .source ? "src" : "dst" }
    }

    let role: Role
    let paths: QEMURunPaths
    let process: ChildProcess
    let control: QMPClient

    private init(role: Role, paths: QEMURunPaths, process: ChildProcess, control: QMPClient) {
        self.role = role
        self.paths = paths
        self.process = process
        self.control = control
    }

    var pid: pid_t { process.pid }

    /// How long QEMU may take to open its QMP sockets: it does so before loading the guest,
    /// within a second even under TCG on a busy machine.
    static let startTimeout: Duration = .seconds(30)

    /// A QEMU from an earlier launch still running in `paths`, by its pid file (and a
    /// command line that names the directory, so a recycled pid is not mistaken for it).
    static func leftover(in paths: QEMURunPaths) -> pid_t? {
        guard let text = try? String(contentsOfFile: paths.pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0,
              let commandLine = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")) else { return nil }
        return String(decoding: commandLine, as: UTF8.self).contains(paths.directory) ? pid : nil
    }

    /// Starts QEMU and waits until its control socket answers QMP. On failure nothing is left
    /// running and the error quotes QEMU's log.
    static func start(role: Role, machine: QEMUMachine, paths: QEMURunPaths) async throws -> LaunchedQEMU {
        do {
            try FileManager.default.createDirectory(atPath: paths.directory, withIntermediateDirectories: true)
        } catch {
            throw RdmigCommandError("cannot create the run directory \(paths.directory): \(error)")
        }
        for file in paths.files { unlink(file) }
        let arguments = machine.arguments(name: "rdmig-\(role.directoryName)", paths: paths, incoming: role == .destination)
        try? (ShellWords.join([machine.binary.path] + arguments) + "\n").write(toFile: paths.commandLine, atomically: false, encoding: .utf8)

        let log = open(paths.log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else {
            throw RdmigCommandError("cannot create \(paths.log): \(SystemCallError(call: "open", errno: errno))")
        }
        let process: ChildProcess
        do {
            defer { close(log) }
            process = try ChildProcess(
                executable: machine.binary.path, arguments: arguments,
                stdin: .null, stdout: .descriptor(log), stderr: .descriptor(log), newProcessGroup: true)
        } catch {
            throw RdmigCommandError("cannot start \(machine.binary.path): \(error)")
        }
        do {
            let control = try await waitForControlSocket(process: process, paths: paths, role: role)
            return LaunchedQEMU(role: role, paths: paths, process: process, control: control)
        } catch {
            process.signal(SIGKILL)
            _ = await process.wait(timeout: .seconds(5))
            throw error
        }
    }

    private static func waitForControlSocket(process: ChildProcess, paths: QEMURunPaths, role: Role) async throws -> QMPClient {
        let deadline = ContinuousClock.now + startTimeout
        while true {
            try InterruptSignal.check()
            if let ending = process.poll() {
                throw RdmigCommandError("the \(role) QEMU did not start (\(ending)); its log \(paths.log) says:\n"
                    + tail(of: paths.log) + "\nthe command line is in \(paths.commandLine)")
            }
            if let client = try await connectIfListening(paths.controlQMP) { return client }
            guard ContinuousClock.now < deadline else {
                throw RdmigCommandError("the \(role) QEMU (pid \(process.pid)) opened no QMP socket at \(paths.controlQMP) "
                    + "within \(startTimeout); its log \(paths.log) says:\n" + tail(of: paths.log))
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// nil while the socket is not there yet, or there and not yet listening.
    private static func connectIfListening(_ path: String) async throws(QMPError) -> QMPClient? {
        do {
            return try await QMPClient.connect(to: path)
        } catch {
            switch error {
            case .socketMissing, .nobodyListening: return nil
            default: throw error
            }
        }
    }

    /// The last lines of a file, for error messages.
    static func tail(of path: String, lines: Int = 20) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8), !text.isEmpty else { return "(nothing)" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    var isRunning: Bool { process.poll() == nil }

    /// What query-status says, or nil when QEMU does not answer.
    func status() async -> QEMURunStatus? {
        try? await control.queryStatus()
    }

    func serialText() -> String {
        (try? String(contentsOfFile: paths.serial, encoding: .utf8)) ?? ""
    }

    /// Asks QEMU to quit (QMP `quit`), waits up to `timeout`, then kills it. Says how it ended.
    @discardableResult
    func stop(timeout: Duration = .seconds(5)) async -> String {
        defer { control.close() }
        if let ending = process.poll() { return "had already exited (\(ending))" }
        do {
            try await control.execute("quit", timeout: timeout)
        } catch where error.isDisconnection {
            // QEMU may close the connection before it replies: that is a quit too.
        } catch {
            // No answer: the kill below ends it.
        }
        if await process.wait(timeout: timeout) != nil { return "quit" }
        process.signal(SIGKILL)
        let ending = await process.wait(timeout: .seconds(5))
        return "killed (no exit within \(timeout) of QMP quit)" + (ending == nil ? ", and still not reaped" : "")
    }
}
