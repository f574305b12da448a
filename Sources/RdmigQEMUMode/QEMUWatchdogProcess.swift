#if canImport(Glibc)
import Glibc
#endif
import Logging
import RdmigQEMU
import RdmigSystem

/// What `rdmig qemu-watchdog` does (started by QEMUSourceWatchdog, its stdin the service's
/// pipe): follow the service's lines until `release` (exit, QEMU untouched) or the pipe's end
/// without it (the service died: recover QEMU, QEMUSourceRecovery).
///
/// The pre-switchover limit: QEMU waits at pre-switchover with the guest stopped, for as long
/// as the service takes to send `migrate-continue` or cancel. The service bounds that wait by
/// its switchover budget itself; if it is stuck (a hung thread, a stopped process) the wait
/// would last for ever, and the watchdog cannot ask QEMU anything meanwhile (the service
/// holds the QMP socket). So when the limit passes it kills the service (SIGKILL: a stuck
/// process may not run a SIGTERM handler) and recovers QEMU as after any death. The limit is
/// the budget plus a grace for the service's own abort, so a service that keeps its budget
/// is never killed.
public struct QEMUWatchdogProcess: Sendable {
    /// Where the watch ended.
    enum Ending: Equatable {
        /// The service released it, or ended before arming it: nothing to do.
        case released
        /// The pipe ended without `release` after `arm`.
        case serviceDied(QEMUSourceRecovery.Plan, continuing: Bool, killedAtLimit: Bool)
    }

    let input: Int32
    let parent: pid_t
    let logger: Logger
    /// How long to keep trying QEMU's QMP socket after the service died (QEMU serves the
    /// next client once it has seen the old connection close).
    var connectTimeout: Duration = .seconds(10)

    public init(input: Int32 = 0, parent: pid_t = getppid(), logger: Logger) {
        self.input = input
        self.parent = parent
        self.logger = logger
    }

    /// Runs to the end; the exit status: 0 when released or QEMU was recovered, 1 when the
    /// recovery could not reach QEMU.
    public func run() async -> Int32 {
        switch watch() {
        case .released:
            return 0
        case .serviceDied(let plan, let continuing, let killed):
            if !killed {
                logger.notice("the source service (pid \(parent)) ended without releasing QEMU (\(plan.qmpPath)): recovering it")
            }
            let qmp: QMPClient
            do {
                qmp = try await connect(plan.qmpPath)
            } catch {
                logger.error("cannot reach QEMU at \(plan.qmpPath) to recover it: \(error)")
                return 1
            }
            defer { qmp.close() }
            let outcome = await QEMUSourceRecovery.recover(plan: plan, continuing: continuing, qmp: qmp, logger: logger)
            logger.notice("recovered: \(outcome)")
            return 0
        }
    }

    /// Reads the service's lines until release or the pipe's end; enforces the
    /// pre-switchover limit meanwhile.
    func watch() -> Ending {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var plan: QEMUSourceRecovery.Plan?
        var limit = Duration.seconds(0)
        var continuing = false
        var preSwitchoverDeadline: ContinuousClock.Instant?
        var killed = false
        while true {
            var wait: Int32 = -1
            if let deadline = preSwitchoverDeadline, !killed {
                let left = deadline - ContinuousClock.now
                if left <= .zero {
                    killAtLimit(limit)
                    killed = true
                } else {
                    wait = Int32(min(left.milliseconds.rounded(.up), 60_000))
                }
            }
            var descriptor = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
            let ready = Glibc.poll(&descriptor, 1, killed ? -1 : wait)
            if ready < 0 {
                if errno == EINTR { continue }
                logger.error("poll on the service's pipe failed: errno \(errno)")
                return plan.map { .serviceDied($0, continuing: continuing, killedAtLimit: killed) } ?? .released
            }
            if ready == 0 { continue }
            let count = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                logger.error("reading the service's pipe failed: errno \(errno)")
            }
            if count <= 0 {
                // The service is gone: every write end closed with it.
                return plan.map { .serviceDied($0, continuing: continuing, killedAtLimit: killed) } ?? .released
            }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[..<newline]
                defer { pending.removeSubrange(...newline) }
                guard let message = QEMUWatchdogMessage(line: line) else {
                    logger.warning("ignoring a line the watchdog does not understand: \(String(decoding: line, as: UTF8.self))")
                    continue
                }
                switch message {
                case .arm(let armed, let preSwitchoverLimit):
                    plan = armed
                    limit = preSwitchoverLimit
                case .preSwitchover:
                    preSwitchoverDeadline = ContinuousClock.now + limit
                case .continuing:
                    continuing = true
                    preSwitchoverDeadline = nil
                case .release:
                    return .released
                }
            }
        }
    }

    private func killAtLimit(_ limit: Duration) {
        // Only the process that started this one: once it died, getppid() names another.
        guard getppid() == parent else { return }
        let seconds = formatFixed(limit.seconds, decimals: 1)
        logger.error("QEMU has waited at pre-switchover with the guest stopped for \(seconds) s, the limit: the source service (pid \(parent)) is stuck; killing it (SIGKILL) and recovering QEMU")
        kill(parent, SIGKILL)
    }

    private func connect(_ path: String) async throws -> QMPClient {
        let deadline = ContinuousClock.now + connectTimeout
        while true {
            do {
                return try await QMPClient.connect(to: path, greetingTimeout: .seconds(2), commandTimeout: .seconds(10))
            } catch {
                switch error {
                case .busy, .nobodyListening, .disconnected:
                    guard ContinuousClock.now < deadline else { throw error }
                    try? await Task.sleep(for: .milliseconds(50))
                default:
                    throw error
                }
            }
        }
    }
}
