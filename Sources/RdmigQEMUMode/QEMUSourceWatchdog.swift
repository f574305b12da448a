#if canImport(Glibc)
import Glibc
#endif
import Logging
import RdmigQEMU
import RdmigSystem
import Synchronization

/// The service's handle on its QEMU watchdog: a child process (`rdmig qemu-watchdog`, see
/// QEMUWatchdogProcess) that outlives a `rdmig source --qemu-qmp` killed with SIGKILL and
/// puts the source QEMU back (QEMUSourceRecovery).
///
/// Why a process and a pipe: nothing in a process runs after SIGKILL, so the guard must be
/// another process. It learns of the death from its stdin, the read end of a pipe whose only
/// write end this process holds: the kernel closes it when this process dies, however it
/// dies, and the watchdog reads end-of-file. PR_SET_PDEATHSIG was not used: it fires when the
/// *thread* that forked exits, and the spawning thread here is a pool thread that may come
/// and go. The write end is close-on-exec from its creation, and ChildProcess closes every
/// other inherited descriptor, so no other child (and not the watchdog) holds a write end or
/// the QMP socket: QEMU sees this process's QMP connection close with it, which is what lets
/// the watchdog connect to the one-client-at-a-time QMP socket afterwards.
///
/// The watchdog starts when QEMU's settings are about to change (`arm`), is told the
/// hand-over's steps, and is released at the end of the service's own work with QEMU
/// (`release`), after which it exits doing nothing.
public final class QEMUSourceWatchdog: QEMUSourceWatch {
    /// How to start the watchdog: normally this very binary with the hidden subcommand.
    public struct Launch: Sendable {
        public var executable: String
        public var arguments: [String]

        public init(executable: String, arguments: [String]) {
            self.executable = executable
            self.arguments = arguments
        }

        /// `/proc/self/exe qemu-watchdog`: the running binary, even if its file was replaced since.
        public static let rdmig = Launch(executable: "/proc/self/exe", arguments: ["qemu-watchdog"])
    }

    private struct State {
        var child: ChildProcess?
        var writeEnd: Int32 = -1
    }

    let launch: Launch
    /// How long QEMU may wait at pre-switchover before the watchdog stops this service.
    let preSwitchoverLimit: Duration
    let logger: Logger
    private let state = Mutex(State())

    public init(launch: Launch, preSwitchoverLimit: Duration, logger: Logger) {
        self.launch = launch
        self.preSwitchoverLimit = preSwitchoverLimit
        self.logger = logger
    }

    deinit {
        // Gone without `release`: the pipe's end tells the watchdog what a death would.
        state.withLock { state in
            if state.writeEnd >= 0 { close(state.writeEnd) }
        }
    }

    public var pid: pid_t? { state.withLock { $0.child?.pid } }

    public func arm(_ plan: QEMUSourceRecovery.Plan) throws {
        try state.withLock { state throws(SystemCallError) in
            precondition(state.child == nil, "a QEMU watchdog is armed once")
            let ends = try PipeCalls.makePipe()
            // A service started with 0, 1 or 2 closed gets them back from pipe2, and the
            // child's standard descriptors are rewired: a write end on the child's stderr
            // would never close. Keep both ends above them.
            let readEnd = try Self.aboveStandardDescriptors(ends.read, closing: ends.write)
            let writeEnd = try Self.aboveStandardDescriptors(ends.write, closing: readEnd)
            defer { close(readEnd) }
            let child: ChildProcess
            do throws(SystemCallError) {
                // Its own process group: a terminal's Ctrl-C reaches the service, whose
                // orderly abort releases the watchdog, not the watchdog itself.
                child = try ChildProcess(executable: launch.executable, arguments: launch.arguments,
                                         stdin: .descriptor(readEnd), stdout: .null, stderr: .inherit, newProcessGroup: true)
            } catch {
                close(writeEnd)
                throw error
            }
            state.child = child
            state.writeEnd = writeEnd
            try send(.arm(plan, preSwitchoverLimit: preSwitchoverLimit), to: writeEnd)
        }
        logger.info("QEMU watchdog armed", metadata: ["pid": "\(pid ?? 0)"])
    }

    public func preSwitchover() {
        tell(.preSwitchover)
    }

    public func continuing() {
        tell(.continuing)
    }

    /// The service's work with QEMU is over: the watchdog exits without touching QEMU. Waits
    /// a moment for it to go (it only reads one more line), so no zombie is left behind.
    public func release() {
        let child: ChildProcess? = state.withLock { state in
            guard state.writeEnd >= 0 else { return nil }
            try? send(.release, to: state.writeEnd)
            close(state.writeEnd)
            state.writeEnd = -1
            return state.child
        }
        guard let child else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while child.poll() == nil && ContinuousClock.now < deadline { usleep(5_000) }
    }

    private func tell(_ message: QEMUWatchdogMessage) {
        state.withLock { state in
            guard state.writeEnd >= 0 else { return }
            do {
                try send(message, to: state.writeEnd)
            } catch {
                logger.warning("the QEMU watchdog did not take '\(message)': \(error)")
            }
        }
    }

    /// `descriptor` itself, or a close-on-exec copy of it at 3 or above (the original
    /// closed). On failure both `descriptor` and `other` are closed.
    private static func aboveStandardDescriptors(_ descriptor: Int32, closing other: Int32) throws(SystemCallError) -> Int32 {
        guard descriptor <= 2 else { return descriptor }
        let moved = fcntl(descriptor, F_DUPFD_CLOEXEC, 3)
        let error = errno
        close(descriptor)
        guard moved >= 0 else {
            close(other)
            throw SystemCallError(call: "fcntl(F_DUPFD_CLOEXEC)", errno: error, context: "QEMU watchdog pipe end \(descriptor)")
        }
        return moved
    }

    private func send(_ message: QEMUWatchdogMessage, to descriptor: Int32) throws(SystemCallError) {
        // A few hundred bytes into an empty pipe: one write, under PIPE_BUF for all but `arm`.
        let bytes = Array(message.line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = try SystemCall.check("write", context: "QEMU watchdog pipe") {
                bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            }
            offset += written
        }
    }
}
