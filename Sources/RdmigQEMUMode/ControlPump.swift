import Foundation
import RdmigChannels
import RdmigMigration
import RdmigSystem

/// The control channel during a QEMU-mode migration. QEMU's drivers run on the concurrency
/// pool while the peer may speak at any moment (ABORT, READY, QEMU_OUTCOME), so one thread
/// receives everything and queues it; ABORT, ERROR and a broken channel are also reported at
/// once (`onPeerFailure`), so the running QEMU migration can be cancelled without waiting for
/// someone to ask. Sends are serialised here: the channel allows one sender at a time.
final class ControlPump: @unchecked Sendable {
    private let session: MigrationSession
    private let condition = NSCondition()
    private var queue: [MigrationMessage] = []
    private var failure: MigrationError?
    private var stopping = false
    private var thread: SystemThread?
    private let sendLock = NSLock()
    private let onPeerFailure: @Sendable (MigrationError) -> Void

    init(session: MigrationSession, onPeerFailure: @escaping @Sendable (MigrationError) -> Void) {
        self.session = session
        self.onPeerFailure = onPeerFailure
    }

    func start() throws(MigrationError) {
        do {
            thread = try SystemThread(name: "rdmig-control") { [self] in run() }
        } catch {
            throw MigrationError(.setup, "starting the control thread: \(error)")
        }
    }

    /// Stops receiving and waits for the thread (within its 100 ms poll).
    func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        thread?.join()
        thread = nil
    }

    private func run() {
        while true {
            condition.lock()
            let stop = stopping
            condition.unlock()
            if stop { return }
            let message: MigrationMessage
            do {
                // Short waits so `stop` is noticed; the control path, not the hot path.
                message = try session.control.receive(timeout: .milliseconds(100))
            } catch {
                if case .timedOut = error { continue }
                fail(MigrationError.channel(error, .precopy, during: "receiving from the peer"))
                return
            }
            switch message {
            case .abort(let abort):
                fail(MigrationError(.precopy, "the peer aborted: \(abort.reason)"))
                return
            case .error(let report):
                fail(MigrationError(.precopy, "the peer reported an error: \(report.message)"))
                return
            default:
                condition.lock()
                queue.append(message)
                condition.broadcast()
                condition.unlock()
                if case .qemuOutcome(let outcome) = message, outcome.guest != .resumed {
                    onPeerFailure(MigrationError(.precopy, "the destination gave up: \(outcome.detail)"))
                }
            }
        }
    }

    private func fail(_ error: MigrationError) {
        condition.lock()
        let first = failure == nil
        if first { failure = error }
        condition.broadcast()
        condition.unlock()
        if first { onPeerFailure(error) }
    }

    /// The peer's failure, once it said so or the channel broke.
    var peerFailure: MigrationError? {
        condition.lock()
        defer { condition.unlock() }
        return failure
    }

    /// The next queued message; nil when none came within `timeout`. Throws the peer's
    /// failure once the queue is empty. Blocks: call it from a dedicated thread.
    func next(timeout: Duration) throws(MigrationError) -> MigrationMessage? {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while queue.isEmpty {
            if let failure { throw failure }
            if stopping { throw MigrationError(.commit, "the control channel was closed") }
            if !condition.wait(until: deadline) { break }
        }
        return queue.isEmpty ? nil : queue.removeFirst()
    }

    /// Waits for the message `matches` accepts; any other message is a protocol error.
    func expect(_ what: String, timeout: Duration, _ matches: (MigrationMessage) -> Bool) throws(MigrationError) -> MigrationMessage {
        guard let message = try next(timeout: timeout) else {
            throw MigrationError(.switchover, "no \(what) from the peer within \(formatFixed(timeout.seconds, decimals: 0)) s")
        }
        guard matches(message) else {
            throw MigrationError(.switchover, "the peer sent \(message.wireName) while this side waited for \(what)")
        }
        return message
    }

    func send(_ message: MigrationMessage, _ phase: MigrationError.Phase) throws(MigrationError) {
        sendLock.lock()
        defer { sendLock.unlock() }
        try session.send(message, phase)
    }

    /// Best effort, like `MigrationSession.abort`.
    func abort(_ reason: String) {
        sendLock.lock()
        defer { sendLock.unlock() }
        session.abort(reason)
    }
}
