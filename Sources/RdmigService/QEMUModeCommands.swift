import ArgumentParser
import Foundation
import Logging
import RdmigMigration
import RdmigQEMU
import RdmigQEMUMode
import RdmigSystem
import RdmigTransport

/// `rdmig source --qemu-qmp` and `rdmig dest --qemu-qmp`: the QEMU-mode halves of the two
/// service commands (see QEMUModeSource / QEMUModeDestination).
enum QEMUModeCommands {
    static func runSource(qmpPath: String, connect: TransportEndpoint, devices: [String], maxBandwidth: ByteRate?,
                          configuration: ServiceConfiguration, service: ServiceOptions) throws {
        let log = service.logger("rdmig.source")
        let key = try service.key(configuration, log: log)
        // As in native mode: transport threads, completion poller and the relay on the
        // device's NUMA node (or [memory] thread-cpus).
        var configuration = configuration
        let (selection, placement) = try configuration.placeHotPath(for: connect, log: log, announceBackend: true)
        var options = QEMUModeSource.Options(
            qmpPath: qmpPath, endpoint: connect, backend: selection.backend, transportOptions: configuration.transport.options,
            deviceSpecs: devices, key: key)
        options.peerTimeout = configuration.peerTimeout
        options.downtimeLimit = configuration.migration.convergence.downtimeLimit
        options.maxBandwidth = maxBandwidth
        options.switchoverBudget = configuration.migration.effectiveSwitchoverBudget
        // A SIGKILL runs none of the clean-up below: the watchdog process puts QEMU back then.
        options.watchdog = FaultInjection.injected("no-qemu-watchdog") ? nil : .rdmig
        options.relayCPUs = placement.cpus
        options.logger = log
        let source = QEMUModeSource(options: options)
        // SIGINT/SIGTERM/SIGHUP cancel the run: its abort path cancels QEMU's migration
        // (migrate_cancel, out of pre-switchover too), resumes the guest with `cont` where it
        // was paused, and puts QEMU's migration settings back.
        InterruptSignal.install()
        let report = waitForAsync { await cancellingOnSignal { await source.run() } }
        try emit(report, role: "source", service: service)
        if report.status != .completed {
            log.error("QEMU migration failed: \(report.error ?? "unknown"); the guest: \(report.guestLocation ?? "unknown")")
            if let signal = InterruptSignal.pending { throw ExitCode(128 + signal) }
            throw ExitCode(1)
        }
    }

    static func runDestination(qmpPath: String, listen: TransportEndpoint, configuration: ServiceConfiguration,
                               service: ServiceOptions) throws {
        let log = service.logger("rdmig.dest")
        let key = try service.key(configuration, log: log)
        let qmp: QMPClient
        do {
            qmp = try waitForAsync { () async throws -> QMPClient in
                let client = try await QMPClient.connect(to: qmpPath, logger: log)
                do {
                    _ = try await QEMUModeDestination.checkReady(client)
                } catch {
                    client.close()
                    throw error
                }
                return client
            }
        } catch {
            throw RdmigCommandError("destination QEMU at \(qmpPath): \(error)")
        }
        defer { qmp.close() }
        var options = QEMUModeDestination.Options(key: key)
        options.peerTimeout = configuration.peerTimeout
        options.handshakeTimeout = configuration.transport.options.handshakeTimeout
        options.logger = log
        var configuration = configuration
        let (selection, placement) = try configuration.placeHotPath(for: listen, log: log, announceBackend: false)
        options.relayCPUs = placement.cpus
        let listener: any TransportListener
        do {
            listener = try selection.backend.listen(on: listen, options: configuration.transport.options)
        } catch {
            throw RdmigCommandError("cannot listen on \(listen): \(error)")
        }
        defer { listener.close() }
        FileHandle.standardError.write(Data("rdmig dest: listening on \(listener.localEndpoint) (\(selection.kind): \(selection.reason)); QEMU \(qmp.version.number) at \(qmpPath)\n".utf8))
        InterruptSignal.install()
        var acceptorOptions = AuthenticatingListener.Options(key: key)
        acceptorOptions.features = MigrationSession.qemuModeFeatures
        acceptorOptions.handshakeTimeout = configuration.transport.options.handshakeTimeout
        acceptorOptions.maximumPending = configuration.transport.options.maximumPendingHandshakes
        let logger = log
        acceptorOptions.log = { logger.notice("\($0)") }
        let acceptor: AuthenticatingListener
        do {
            acceptor = try AuthenticatingListener(listener: listener, options: acceptorOptions)
        } catch {
            throw RdmigCommandError("starting to accept migrations on \(listener.localEndpoint): \(error)")
        }
        defer { acceptor.stop() }
        var next: MigrationSession?
        while next == nil {
            if let signal = InterruptSignal.pending {
                log.notice("\(ChildProcess.signalName(signal)): no migration came; the destination QEMU is left as it was")
                throw ExitCode(128 + signal)
            }
            next = acceptor.nextSession(timeout: .milliseconds(250))
            if next == nil, acceptor.isStopped {
                throw RdmigCommandError("the listener on \(listener.localEndpoint) stopped accepting connections")
            }
        }
        let session = next!
        acceptor.stop()
        let peer = session.connection.peerEndpoint
        let destination = QEMUModeDestination(options: options, qmp: qmp)
        let report = waitForAsync { await cancellingOnSignal { await destination.run(session: session) } }
        try emit(report, role: "dest", service: service)
        if report.status != .completed {
            if let signal = InterruptSignal.pending {
                log.error("QEMU migration from \(peer) stopped by \(ChildProcess.signalName(signal)): \(report.error ?? "unknown"); the guest: \(report.guestLocation ?? "unknown")")
                throw ExitCode(128 + signal)
            }
            log.error("QEMU migration from \(peer) failed: \(report.error ?? "unknown"); the guest: \(report.guestLocation ?? "unknown")")
            throw ExitCode(1)
        }
    }

    static func emit(_ report: QEMUModeReport, role: String, service: ServiceOptions) throws {
        if service.json {
            print(try QEMUModeCommands.json(report))
        } else {
            FileHandle.standardError.write(Data("rdmig \(role) (QEMU mode):\n\(report.text)\n".utf8))
        }
    }
}

extension QEMUModeCommands {
    /// The report as one JSON object with kebab-case keys, like native mode's QMP-style names
    /// (`total-time-milliseconds`, `downtime-milliseconds`, `bytes-per-second`, ...).
    static func json(_ report: QEMUModeReport) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .custom { path in
            KebabKey(camelCase: path.last!.stringValue)
        }
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }
}

private struct KebabKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
    init(camelCase: String) {
        var text = ""
        for character in camelCase {
            if character.isUppercase {
                text += "-" + character.lowercased()
            } else {
                text.append(character)
            }
        }
        stringValue = text
    }
}

/// ArgumentParser's commands are synchronous; QEMU mode's drivers are async. The command's
/// thread waits while the work runs on the concurrency pool.
/// Runs `body` in a task that is cancelled when SIGINT, SIGTERM or SIGHUP arrives
/// (`InterruptSignal`, checked every 100 ms), and waits for its result: cancellation is the
/// QEMU-mode drivers' orderly abort.
func cancellingOnSignal<Value: Sendable>(_ body: @escaping @Sendable () async -> Value) async -> Value {
    let task = Task { await body() }
    let watcher = Task {
        while !Task.isCancelled {
            if InterruptSignal.pending != nil {
                task.cancel()
                return
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }
    let value = await task.value
    watcher.cancel()
    return value
}

func waitForAsync<Value: Sendable>(_ body: @escaping @Sendable () async -> Value) -> Value {
    let box = AsyncResultBox<Value>()
    Task {
        box.set(await body())
    }
    return box.wait()
}

func waitForAsync<Value: Sendable>(_ body: @escaping @Sendable () async throws -> Value) throws -> Value {
    let result: Result<Value, any Error> = waitForAsync { () async -> Result<Value, any Error> in
        do {
            return .success(try await body())
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

private final class AsyncResultBox<Value: Sendable>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value?

    func set(_ value: Value) {
        condition.lock()
        self.value = value
        condition.broadcast()
        condition.unlock()
    }

    func wait() -> Value {
        condition.lock()
        defer { condition.unlock() }
        while value == nil { condition.wait() }
        return value!
    }
}
