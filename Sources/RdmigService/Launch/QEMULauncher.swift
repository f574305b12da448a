#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigQEMU
import RdmigSystem

/// What `rdmig qemu-launch` does once its flags are checked: start a source QEMU and a
/// destination QEMU (`-incoming defer -S`), then either print the two rdmig command lines
/// (`--no-migrate`) or run them, report, and stop the QEMUs (unless `--keep`).
/// Whatever fails or interrupts it, the QEMUs it started are quit (QMP `quit`, then SIGKILL).
struct QEMULauncher {
    struct Settings {
        var machine: QEMUMachine
        /// The self-checking test guest: wait for its first heartbeat before migrating, and
        /// check the destination's heartbeats (no lost page) after.
        var testGuest: Bool
        var directory: String
        var migrate: Bool
        var keep: Bool
        var port: UInt16?
        var rdmig: String
        /// Options both rdmig services get (--config, --key-file, -v).
        var sharedOptions: [String]
        /// Options only the source takes (--vf, --downtime-limit, --max-bandwidth).
        var sourceOptions: [String]
        var json: Bool
    }

    /// The port printed in `--no-migrate` command lines when --port is not given (the README's).
    static let manualPort: UInt16 = 7472
    /// Heartbeats the destination's test guest must print, without a lost page, after the migration.
    static let destinationHeartbeats = 2

    let settings: Settings

    var sourcePaths: QEMURunPaths { QEMURunPaths(directory: settings.directory + "/" + LaunchedQEMU.Role.source.directoryName) }
    var destinationPaths: QEMURunPaths { QEMURunPaths(directory: settings.directory + "/" + LaunchedQEMU.Role.destination.directoryName) }

    /// Refuses a run directory where an earlier launch's QEMU still runs, or whose socket
    /// paths would not fit a unix socket address.
    static func checkDirectory(_ directory: String) throws(RdmigCommandError) {
        for name in [LaunchedQEMU.Role.source, .destination].map(\.directoryName) {
            let paths = QEMURunPaths(directory: directory + "/" + name)
            if let pid = LaunchedQEMU.leftover(in: paths) {
                throw RdmigCommandError("a QEMU from an earlier rdmig qemu-launch still runs in \(paths.directory) (pid \(pid)): "
                    + "stop it with `kill \(pid)` or choose another --dir")
            }
            guard paths.socketPathsFit else {
                throw RdmigCommandError("--dir \(directory) is too long: the QMP socket path \(paths.controlQMP) "
                    + "exceeds the \(QEMURunPaths.socketPathLimit) bytes a unix socket address holds; choose a shorter --dir")
            }
        }
    }

    /// The exit status: 0 when the migration completed (or, with --no-migrate, both QEMUs run).
    /// Call `InterruptSignal.install()` first, on the thread that waits for this.
    func run() async throws -> Int32 {
        try QEMULauncher.checkDirectory(settings.directory)
        var started: [LaunchedQEMU] = []
        do {
            let machine = settings.machine
            note("QEMU \(machine.version) (\(machine.binary.path)), \(machine.accelerator), \(machine.memory) RAM as -m \(machine.memoryArgument)"
                + (machine.oddRAMSize ? " (odd RAM size: QEMU < 9.0 loses writes under TCG without it)" : "")
                + ", \(machine.processors) vCPU, run directory \(settings.directory)")
            let source = try await LaunchedQEMU.start(role: .source, machine: machine, paths: sourcePaths)
            started.append(source)
            let destination = try await LaunchedQEMU.start(role: .destination, machine: machine, paths: destinationPaths)
            started.append(destination)
            note("source QEMU pid \(source.pid), destination QEMU pid \(destination.pid) (-incoming defer -S)")
            guard settings.migrate else {
                try printManualSteps(source: source, destination: destination)
                return 0
            }
            if settings.testGuest { try await waitForFirstHeartbeat(source) }
            let migration = LaunchedMigration(
                rdmig: settings.rdmig, directory: settings.directory,
                destinationArguments: ["dest", "--qemu-qmp", destinationPaths.rdmigQMP] + settings.sharedOptions
                    + (settings.json ? ["--json"] : []),
                sourceArguments: ["source", "--qemu-qmp", sourcePaths.rdmigQMP] + settings.sharedOptions + settings.sourceOptions
                    + (settings.json ? ["--json"] : []),
                port: settings.port ?? 0)
            note("migrating: \(ShellWords.join([settings.rdmig] + migration.destinationArguments)) --listen 127.0.0.1:PORT & "
                + "\(ShellWords.join([settings.rdmig] + migration.sourceArguments)) --connect 127.0.0.1:PORT")
            let outcome = try await migration.run()
            try InterruptSignal.check()
            var summary = Summary(outcome: outcome)
            summary.sourceState = await source.status()
            summary.destinationState = await destination.status()
            if settings.testGuest && outcome.succeeded {
                summary.guestCheck = try await checkGuest(on: destination, sourceHeartbeats: TestGuestHeartbeat.parse(source.serialText()))
            }
            // --keep keeps the QEMU that runs the guest (the destination after a completed
            // migration, the source after a failed one) and quits the other: a stopped source
            // left around invites a `cont` that would run the guest twice.
            let keepSource = settings.keep && summary.sourceState?.running == true
            let keepDestination = settings.keep && summary.destinationState?.running == true
            async let sourceStop = keepSource ? nil : source.stop()
            async let destinationStop = keepDestination ? nil : destination.stop()
            summary.sourceStop = await sourceStop
            summary.destinationStop = await destinationStop
            try emit(summary, source: source, destination: destination)
            return summary.succeeded ? 0 : 1
        } catch {
            if !started.isEmpty {
                var endings: [String] = []
                for qemu in started { endings.append("\(qemu.role) QEMU pid \(qemu.pid): \(await qemu.stop())") }
                note("stopped the QEMUs it started: " + endings.joined(separator: "; "))
            }
            throw error
        }
    }

    func note(_ message: String) {
        FileHandle.standardError.write(Data("rdmig qemu-launch: \(message)\n".utf8))
    }

    /// The test guest fills its working set before its first heartbeat: migrating from then
    /// on moves a guest that is really writing.
    private func waitForFirstHeartbeat(_ source: LaunchedQEMU) async throws {
        note("waiting for the test guest's first heartbeat on \(source.paths.serial)")
        let timeout: Duration = .seconds(120)
        let deadline = ContinuousClock.now + timeout
        while TestGuestHeartbeat.parse(source.serialText()).isEmpty {
            try InterruptSignal.check()
            guard source.isRunning else {
                throw RdmigCommandError("the source QEMU exited while the test guest booted; its serial console ends:\n"
                    + LaunchedQEMU.tail(of: source.paths.serial) + "\nits log: " + LaunchedQEMU.tail(of: source.paths.log))
            }
            guard ContinuousClock.now < deadline else {
                throw RdmigCommandError("the test guest printed no heartbeat within \(timeout); its serial console ends:\n"
                    + LaunchedQEMU.tail(of: source.paths.serial))
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    struct GuestCheck {
        var heartbeats: [TestGuestHeartbeat]
        var sourceLast: TestGuestHeartbeat?
        var error: String?

        var pageErrors: Int { heartbeats.map(\.errors).max() ?? 0 }
    }

    /// The guest must go on on the destination: heartbeats following the source's, and no
    /// page that lost a write (init.c counts them).
    private func checkGuest(on destination: LaunchedQEMU, sourceHeartbeats: [TestGuestHeartbeat]) async throws -> GuestCheck {
        let timeout: Duration = .seconds(20)
        let deadline = ContinuousClock.now + timeout
        var beats = TestGuestHeartbeat.parse(destination.serialText())
        while beats.count < QEMULauncher.destinationHeartbeats && ContinuousClock.now < deadline && destination.isRunning {
            try InterruptSignal.check()
            try await Task.sleep(for: .milliseconds(100))
            beats = TestGuestHeartbeat.parse(destination.serialText())
        }
        var check = GuestCheck(heartbeats: beats, sourceLast: sourceHeartbeats.last)
        if beats.count < QEMULauncher.destinationHeartbeats {
            check.error = "the test guest printed \(beats.count) heartbeats on the destination within \(timeout) "
                + (destination.isRunning ? "" : "(the destination QEMU exited) ")
                + "instead of \(QEMULauncher.destinationHeartbeats); its serial console ends:\n" + LaunchedQEMU.tail(of: destination.paths.serial, lines: 8)
        } else if check.pageErrors > 0 {
            check.error = "the test guest found \(check.pageErrors) pages that lost a write after the migration: "
                + LaunchedQEMU.tail(of: destination.paths.serial, lines: 8)
        }
        return check
    }

    struct Summary {
        let outcome: LaunchedMigration.Outcome
        var sourceState: QEMURunStatus?
        var destinationState: QEMURunStatus?
        var guestCheck: GuestCheck?
        /// How each QEMU was stopped, nil when left running (--keep).
        var sourceStop: String?
        var destinationStop: String?

        init(outcome: LaunchedMigration.Outcome) { self.outcome = outcome }

        var succeeded: Bool { outcome.succeeded && guestCheck?.error == nil }

        var error: String? {
            var problems: [String] = []
            if !outcome.sourceEnding.succeeded { problems.append("rdmig source ended with \(outcome.sourceEnding)") }
            if !outcome.destinationEnding.succeeded { problems.append("rdmig dest ended with \(outcome.destinationEnding)") }
            if let error = guestCheck?.error { problems.append(error) }
            return problems.isEmpty ? nil : problems.joined(separator: "; ")
        }

        /// Where the guest is, from the QEMUs' own states.
        func stateText(_ state: QEMURunStatus?, role: LaunchedQEMU.Role) -> String {
            guard let state else { return "not answering QMP" }
            switch (role, state.status) {
            case (.source, "postmigrate"): return "postmigrate (stopped: its guest moved to the destination)"
            case (.source, _) where state.running: return "\(state) (the guest still runs here: the migration did not complete)"
            case (.destination, "running"): return "running (the migrated guest)"
            case (.destination, "inmigrate"), (.destination, "prelaunch"), (.destination, "paused"):
                return "\(state) (never ran the guest)"
            default: return "\(state)"
            }
        }
    }

    private func emit(_ summary: Summary, source: LaunchedQEMU, destination: LaunchedQEMU) throws {
        let outcome = summary.outcome
        if settings.json {
            var object: [String: Any] = [
                "status": summary.succeeded ? "completed" : "failed",
                "run-directory": settings.directory,
                "source": QEMULauncher.jsonObject(outcome.sourceOutput) ?? NSNull(),
                "dest": QEMULauncher.jsonObject(outcome.destinationOutput) ?? NSNull(),
                "source-exit-status": outcome.sourceEnding.shellStatus,
                "dest-exit-status": outcome.destinationEnding.shellStatus,
                "qemu": [
                    "source": qemuObject(source, state: summary.sourceState, stop: summary.sourceStop),
                    "destination": qemuObject(destination, state: summary.destinationState, stop: summary.destinationStop),
                ],
            ]
            if let error = summary.error { object["error"] = error }
            if let check = summary.guestCheck {
                var guest: [String: Any] = ["destination-heartbeats": check.heartbeats.count, "page-errors": check.pageErrors]
                if let last = check.sourceLast { guest["source-last-n"] = last.n }
                if let first = check.heartbeats.first { guest["destination-first-n"] = first.n }
                object["guest-check"] = guest
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var lines: [String] = []
        if summary.succeeded {
            lines.append("rdmig qemu-launch: migration completed; the guest moved to the destination QEMU")
        } else {
            lines.append("rdmig qemu-launch: migration FAILED: \(summary.error ?? "unknown")")
        }
        for (qemu, state, stop) in [(source, summary.sourceState, summary.sourceStop), (destination, summary.destinationState, summary.destinationStop)] {
            let fate = stop.map { "then \($0)" } ?? "left running: QMP \(qemu.paths.controlQMP), serial \(qemu.paths.serial); stop it with: kill \(qemu.pid)"
            lines.append("  \(qemu.role) QEMU pid \(qemu.pid): \(summary.stateText(state, role: qemu.role)); \(fate)")
        }
        if let check = summary.guestCheck, check.error == nil {
            let follows = check.sourceLast.map { " (n=\(check.heartbeats[0].n) after the source's n=\($0.n))" } ?? ""
            lines.append("  test guest on the destination: \(check.heartbeats.count) heartbeats, \(check.pageErrors) pages lost\(follows)")
        }
        lines.append("  logs, serial consoles and reports: \(settings.directory)")
        print(lines.joined(separator: "\n"))
    }

    private func qemuObject(_ qemu: LaunchedQEMU, state: QEMURunStatus?, stop: String?) -> [String: Any] {
        var object: [String: Any] = [
            "pid": Int(qemu.pid), "qmp": qemu.paths.rdmigQMP, "control-qmp": qemu.paths.controlQMP,
            "serial": qemu.paths.serial, "log": qemu.paths.log,
            "left": stop == nil ? "running" : "stopped",
        ]
        if let state { object["state-after-migration"] = state.status }
        if let stop { object["stop"] = stop }
        return object
    }

    static func jsonObject(_ text: String) -> Any? {
        guard let data = text.data(using: .utf8), !data.isEmpty else { return nil }
        return try? JSONSerialization.jsonObject(with: data)
    }

    private func printManualSteps(source: LaunchedQEMU, destination: LaunchedQEMU) throws {
        let port = settings.port ?? QEMULauncher.manualPort
        let destinationCommand = [settings.rdmig, "dest", "--qemu-qmp", destination.paths.rdmigQMP, "--listen", "127.0.0.1:\(port)"]
            + settings.sharedOptions
        let sourceCommand = [settings.rdmig, "source", "--qemu-qmp", source.paths.rdmigQMP, "--connect", "127.0.0.1:\(port)"]
            + settings.sharedOptions + settings.sourceOptions
        if settings.json {
            let object: [String: Any] = [
                "run-directory": settings.directory,
                "qemu": [
                    "source": qemuObject(source, state: nil, stop: nil),
                    "destination": qemuObject(destination, state: nil, stop: nil),
                ],
                "dest-command": destinationCommand, "source-command": sourceCommand,
                "stop-command": ["kill", "\(source.pid)", "\(destination.pid)"],
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("""
            rdmig qemu-launch: two QEMUs run in \(settings.directory):
              source       pid \(source.pid): QMP for rdmig \(source.paths.rdmigQMP), serial \(source.paths.serial)
              destination  pid \(destination.pid) (-incoming defer -S): QMP for rdmig \(destination.paths.rdmigQMP), serial \(destination.paths.serial)
            Migrate (the destination first; each prints its report):
              \(ShellWords.join(destinationCommand)) &
              \(ShellWords.join(sourceCommand))
            Stop the QEMUs (or QMP quit on \(source.paths.controlQMP) and \(destination.paths.controlQMP)):
              kill \(source.pid) \(destination.pid)
            """)
    }
}
