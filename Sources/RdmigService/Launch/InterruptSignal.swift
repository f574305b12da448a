#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// SIGINT, SIGTERM and SIGHUP turned into a flag that `rdmig qemu-launch` checks in its waits,
/// so that a Ctrl-C or a `kill` stops the QEMUs it started instead of orphaning them.
/// The handler only stores the signal number: a lock-free atomic store is async-signal-safe.
enum InterruptSignal {
    private static let received = Atomic<Int32>(0)

    static let handled: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    /// Installs the handler and unblocks the signals on the calling thread, so they are
    /// delivered there: a parent may start rdmig with them blocked (Foundation's `Process`
    /// passes on the mask of the thread that spawned it, and test runners block them), and a
    /// blocked SIGTERM would leave the QEMUs running. Call it on the thread that waits (the
    /// command's). Installing again is harmless.
    static func install() {
        _ = received.load(ordering: .relaxed)  // initialised before a handler can touch it
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in
            InterruptSignal.received.store(signal, ordering: .relaxed)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = SA_RESTART
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in handled {
            sigaction(signal, &action, nil)
            sigaddset(&unblock, signal)
        }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    }

    /// The signal received since `install()`, if any.
    static var pending: Int32? {
        let signal = received.load(ordering: .relaxed)
        return signal == 0 ? nil : signal
    }

    /// Thrown out of a wait when a signal came: the launch stops what it started and exits
    /// with 128 + the signal, as a shell reports a process the signal ended.
    struct Received: Error, CustomStringConvertible {
        let signal: Int32
        var description: String { "interrupted by signal \(signal)" }
    }

    /// What a migration says when it stops for the pending signal ("stopped by SIGTERM").
    static var stopReason: String? {
        pending.map { "stopped by \(ChildProcess.signalName($0))" }
    }

    static func check() throws(Received) {
        if let pending { throw Received(signal: pending) }
    }
}
