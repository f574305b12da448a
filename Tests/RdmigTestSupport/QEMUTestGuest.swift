#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigQEMU

/// A test guest started by Tests/qemu-guest/run-guest.sh (the self-checking guest of
/// build-image.sh: it prints `rdmig-guest: heartbeat n= written= errors=` on its serial port).
/// Two QMP sockets: `rdmigQMP` for the code under test, `testQMP` for the test's own checks.
public struct QEMUTestGuest: Sendable {
    public typealias Heartbeat = TestGuestHeartbeat

    public struct SetupError: Error, CustomStringConvertible {
        public let description: String
    }

    public let name: String
    public let runDirectory: String
    public let testQMP: String
    public let rdmigQMP: String
    public let serial: String
    public let pid: pid_t

    public static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("qemu-guest").path

    /// The QEMU binary run-guest.sh would use (RDMIG_QEMU or qemu-system-x86_64 on PATH), when it is installed.
    public static let qemuBinary: String? = try? QEMUBinary.locate().path

    /// Evaluated once; says why when the QEMU tests will be skipped.
    public static let qemuAvailable: Bool = {
        do {
            _ = try QEMUBinary.locate()
            return true
        } catch {
            print("rdmig QEMU tests: SKIPPED: \(error)")
            return false
        }
    }()

    /// Starts a guest in the background (run-guest.sh daemonizes QEMU and returns).
    public static func start(name: String, memoryMiB: Int = 256, workingSetMiB: Int = 64, dirtyRate: Int = 20,
                      heartbeatMilliseconds: Int = 500, incoming: Bool = false) async throws -> QEMUTestGuest {
        var arguments = ["--name", name, "--memory", "\(memoryMiB)", "--ws", "\(workingSetMiB)",
                         "--rate", "\(dirtyRate)", "--hb", "\(heartbeatMilliseconds)"]
        if incoming { arguments.append("--incoming") }
        let (status, output, errors) = try await run("\(scripts)/run-guest.sh", arguments)
        guard status == 0 else {
            throw SetupError(description: "run-guest.sh \(name) failed (exit \(status)): \(errors)")
        }
        var values: [String: String] = [:]
        for line in output.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        guard let directory = values["RDMIG_RUN_DIR"], let qmp = values["RDMIG_QMP"], let qmp2 = values["RDMIG_QMP2"],
              let serial = values["RDMIG_SERIAL"], let pid = values["RDMIG_PID"].flatMap({ pid_t($0) }) else {
            throw SetupError(description: "run-guest.sh \(name) printed no RDMIG_* values: \(output)")
        }
        return QEMUTestGuest(name: name, runDirectory: directory, testQMP: qmp, rdmigQMP: qmp2, serial: serial, pid: pid)
    }

    /// Running, and not a zombie waiting to be reaped.
    public var isAlive: Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return !stat[close...].hasPrefix(") Z")
    }

    /// Kills QEMU and removes its run folder (unless RDMIG_KEEP_GUESTS is set).
    public func stop() {
        kill(pid, SIGKILL)
        if ProcessInfo.processInfo.environment["RDMIG_KEEP_GUESTS"] == nil {
            try? FileManager.default.removeItem(atPath: runDirectory)
        }
    }

    public func serialText() -> String {
        (try? String(contentsOfFile: serial, encoding: .utf8)) ?? ""
    }

    public func heartbeats() -> [Heartbeat] {
        TestGuestHeartbeat.parse(serialText())
    }

    /// The last lines of the serial console, for failure messages.
    public func serialTail(_ lines: Int = 8) -> String {
        serialText().split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// Waits until the guest printed at least `count` heartbeats.
    @discardableResult
    public func waitForHeartbeats(_ count: Int, timeout: Duration) async throws -> [Heartbeat] {
        let deadline = ContinuousClock.now + timeout
        while true {
            let beats = heartbeats()
            if beats.count >= count { return beats }
            guard ContinuousClock.now < deadline, isAlive else {
                throw SetupError(description: "\(name): \(beats.count) of \(count) heartbeats within \(timeout)"
                    + (isAlive ? "" : " (QEMU exited)") + "; serial ends:\n\(serialTail())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Waits for the QEMU process to end.
    public func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isAlive && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        return !isAlive
    }

    /// posix_spawn + waitpid on a dedicated thread, output through files: Foundation's Process
    /// lost the exit of run-guest.sh here (its daemonized QEMU outlives it), hanging the test.
    private static func run(_ executable: String, _ arguments: [String]) async throws -> (Int32, String, String) {
        try await DedicatedThread.run(name: "run-guest") {
            let base = NSTemporaryDirectory() + "rdmig-run-guest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let (outPath, errorPath) = (base + ".out", base + ".err")
            defer {
                unlink(outPath)
                unlink(errorPath)
            }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            // The daemonized QEMU lives on: it must hold none of this process's descriptors (a
            // test's socket kept open in QEMU never reports its end), so the child closes every
            // descriptor above 2 before it runs the script (posix_spawn's closefrom is not
            // visible to Swift here).
            let closeAll = #"for fd in /proc/$$/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$0" "$@""#
            let command = ["/bin/bash", "-c", closeAll, executable] + arguments
            let argv: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid = pid_t()
            let spawned = posix_spawn(&pid, "/bin/bash", &actions, nil, argv, environ)
            guard spawned == 0 else { throw SetupError(description: "posix_spawn \(executable): errno \(spawned)") }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
            let errors = (try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? ""
            return (exit, out, errors)
        }
    }
}
