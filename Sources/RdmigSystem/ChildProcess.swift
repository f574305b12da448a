#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A process started with posix_spawn and reaped by the object that started it.
///
/// Not Foundation's `Process`: the children here may outlive this process (a QEMU left running
/// on purpose), so they get their own process group and none of the descriptors this process
/// inherited without close-on-exec (a test runner's pipes, a terminal's extra fds): a
/// long-lived child holding a pipe of ours keeps its reader from ever seeing the end.
public final class ChildProcess: Sendable {
    /// Where one of the child's standard descriptors (0, 1, 2) goes.
    public enum Stream: Sendable, Equatable {
        /// The same descriptor as this process.
        case inherit
        /// /dev/null.
        case null
        /// A file, created (mode 0644) or truncated.
        case file(String)
        /// One of this process's descriptors, duplicated; the caller keeps and closes its own.
        case descriptor(Int32)
    }

    /// How a child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        public var succeeded: Bool { self == .exited(0) }

        /// The status a shell shows for it: the exit code, or 128 + the signal.
        public var shellStatus: Int32 {
            switch self {
            case .exited(let code): return code
            case .signalled(let signal): return 128 + signal
            }
        }

        public var description: String {
            switch self {
            case .exited(let code): return "exit status \(code)"
            case .signalled(let signal): return "killed by signal \(signal) (\(ChildProcess.signalName(signal)))"
            }
        }

        init(waitStatus status: Int32) {
            // WIFEXITED / WEXITSTATUS / WTERMSIG of <sys/wait.h>, which Swift does not import (macros).
            let signal = status & 0x7f
            self = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
        }
    }

    public let pid: pid_t
    public let executable: String
    private let ending = Mutex<Termination?>(nil)

    /// Starts `executable` (a path: no PATH search) with `arguments` (argv[1...]).
    /// `environment` nil passes this process's own. `newProcessGroup` puts the child in a
    /// process group of its own, so a terminal's Ctrl-C (sent to the foreground group) does
    /// not reach it: its owner decides when it stops.
    public init(
        executable: String, arguments: [String], environment: [String: String]? = nil,
        stdin: Stream = .null, stdout: Stream = .inherit, stderr: Stream = .inherit, newProcessGroup: Bool = false
    ) throws(SystemCallError) {
        self.executable = executable
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .inherit:
                break
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .file(let path):
                posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            case .descriptor(let source):
                posix_spawn_file_actions_adddup2(&actions, source, target)
            }
        }
        // glibc's spawn ignores a close of a descriptor that is already closed by then
        // (posix/spawni.c: errors are reported only for descriptors out of range).
        for descriptor in ChildProcess.inheritableDescriptors() {
            posix_spawn_file_actions_addclose(&actions, descriptor)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // rdmig ignores SIGPIPE and may block signals on the spawning thread: a child starts
        // with the defaults, as it would from a shell.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        var flags = Int32(POSIX_SPAWN_SETSIGDEF) | Int32(POSIX_SPAWN_SETSIGMASK)
        if newProcessGroup {
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var spawned = pid_t()
        let result: Int32
        if let environment {
            let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
            defer { envp.forEach { free($0) } }
            result = posix_spawn(&spawned, executable, &actions, &attributes, argv, envp)
        } else {
            result = posix_spawn(&spawned, executable, &actions, &attributes, argv, environ)
        }
        guard result == 0 else { throw SystemCallError(call: "posix_spawn", errno: result, context: executable) }
        pid = spawned
    }

    deinit {
        // Reap a child that already ended so it does not stay a zombie; a running one is
        // left alone (it may be meant to outlive its owner).
        _ = poll()
    }

    /// How the child ended, reaping it, or nil while it runs.
    public func poll() -> Termination? {
        ending.withLock { ending in
            if let ending { return ending }
            var status: Int32 = 0
            var result: pid_t
            repeat { result = waitpid(pid, &status, WNOHANG) } while result < 0 && errno == EINTR
            guard result == pid else { return nil }
            ending = Termination(waitStatus: status)
            return ending
        }
    }

    /// Sends `signal` unless the child has been reaped (its pid may belong to another process by then).
    public func signal(_ signal: Int32) {
        ending.withLock { ending in
            if ending == nil { _ = kill(pid, signal) }
        }
    }

    /// Waits for the end, polling; nil when the child still runs after `timeout` or the task was cancelled.
    public func wait(timeout: Duration) async -> Termination? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let ending = poll() { return ending }
            guard ContinuousClock.now < deadline, !Task.isCancelled else { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits for the end, blocking the calling thread (for short-lived children).
    public func waitUntilExit() -> Termination {
        while true {
            if let ending = poll() { return ending }
            usleep(10_000)
        }
    }

    /// Runs `executable` to its end and returns how it ended and what it wrote on stdout and
    /// stderr together (for short outputs: `qemu --version`, a build script's assignments).
    /// Blocks the calling thread.
    public static func capture(
        executable: String, arguments: [String], environment: [String: String]? = nil
    ) throws(SystemCallError) -> (Termination, String) {
        var ends: [Int32] = [-1, -1]
        // pipe2 is hidden from Swift here (_GNU_SOURCE): close-on-exec is set right after.
        try SystemCall.check("pipe") { pipe(&ends) }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        let child: ChildProcess
        do {
            child = try ChildProcess(
                executable: executable, arguments: arguments, environment: environment,
                stdout: .descriptor(ends[1]), stderr: .descriptor(ends[1]))
        } catch {
            close(ends[0])
            close(ends[1])
            throw error
        }
        close(ends[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(ends[0], $0.baseAddress, $0.count) }
            if count > 0 {
                output.append(contentsOf: buffer[0..<count])
            } else if count == 0 || errno != EINTR {
                break
            }
        }
        close(ends[0])
        return (child.waitUntilExit(), String(decoding: output, as: UTF8.self))
    }

    /// This process's open descriptors above 2 without close-on-exec: what a child would
    /// inherit without asking for it.
    static func inheritableDescriptors() -> [Int32] {
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var descriptors: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let descriptor = Int32(name), descriptor > 2, descriptor != own else { continue }
            let flags = fcntl(descriptor, F_GETFD)
            if flags >= 0 && flags & FD_CLOEXEC == 0 { descriptors.append(descriptor) }
        }
        return descriptors
    }

    public static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: return "SIGHUP"
        case SIGINT: return "SIGINT"
        case SIGQUIT: return "SIGQUIT"
        case SIGABRT: return "SIGABRT"
        case SIGKILL: return "SIGKILL"
        case SIGSEGV: return "SIGSEGV"
        case SIGPIPE: return "SIGPIPE"
        case SIGTERM: return "SIGTERM"
        default: return "signal \(signal)"
        }
    }
}
