#if canImport(Glibc)
import Glibc
#endif
import RdmigChannels
import RdmigMigration
import RdmigSystem
import Synchronization

/// One relayed connection, on one side: the local unix connection's bytes go into `sender`
/// (the peer's ring) on a thread of their own, and `receiver`'s bytes go into the local
/// connection on the calling thread.
///
/// Semantics, both sides alike:
/// - end of file from the local connection finishes the outgoing stream; the peer then shuts
///   its local connection down for writing (a half-close), the other direction going on;
/// - a failure either way (the local connection reset, the transport lost, the peer's abort)
///   stops both directions: the session's channels are closed, which the peer sees as its
///   connection failing, and the local connection is shut down both ways (its peer sees the
///   connection end, not a clean half-close of one direction only);
/// - backpressure: a local reader that stops reading blocks the write here, this side grants
///   the sender no more credit, and the far side's local writer blocks once the rings and
///   socket buffers are full: memory is bounded by the rings.
final class ProxyConnectionRelay: @unchecked Sendable {
    struct Outcome: Sendable {
        var bytesOut: UInt64
        var bytesIn: UInt64
        /// CPU time of this connection's two relay threads (the transport's threads, shared
        /// by every connection, are in the totals' process CPU time).
        var relayCPU: Duration
        /// Why the connection was torn down instead of ending cleanly both ways.
        var failure: String?
    }

    /// How long one direction may stall on the peer's credit (its local reader not reading)
    /// before the connection is given up: a stalled migration is QEMU's or libvirt's to time
    /// out, not the relay's.
    static let stallLimit: Duration = .seconds(24 * 3600)

    private let session: MigrationSession
    private let socket: Int32
    private let sender: ByteStreamSender
    private let receiver: ByteStreamReceiver
    private let cpus: [Int32]
    private let failure = Mutex<String?>(nil)
    private let outgoingCPU = Mutex<Duration>(.zero)

    /// `socket` stays owned by the caller (closed after `run`).
    init(session: MigrationSession, socket: Int32, sender: ByteStreamSender, receiver: ByteStreamReceiver, cpus: [Int32]) {
        self.session = session
        self.socket = socket
        self.sender = sender
        self.receiver = receiver
        self.cpus = cpus
    }

    /// Relays until both directions ended or one failed. The channels are closed when it
    /// returns; the session and the socket are the caller's to close.
    func run() -> Outcome {
        let outgoing: SystemThread?
        do {
            outgoing = try SystemThread(name: "rdmig-proxy-out", cpus: cpus) { [self] in relayOutgoing() }
        } catch {
            fail("starting the relay thread: \(error)")
            outgoing = nil
        }
        let cpuStarted = Self.threadCPUTime()
        if outgoing != nil { relayIncoming() }
        let incomingCPU = Self.threadCPUTime() - cpuStarted
        outgoing?.join()
        receiver.close()
        sender.close()
        return Outcome(bytesOut: sender.bytesSent, bytesIn: receiver.bytesReceived,
                       relayCPU: incomingCPU + outgoingCPU.withLock { $0 }, failure: failure.withLock { $0 })
    }

    /// Stops the connection from outside (the service is stopping).
    func abort(_ reason: String) {
        fail(reason)
    }

    private var failed: Bool { failure.withLock { $0 != nil } }

    private func relayOutgoing() {
        let cpuStarted = Self.threadCPUTime()
        defer { outgoingCPU.withLock { $0 = Self.threadCPUTime() - cpuStarted } }
        do {
            _ = try sender.relay(fromFileDescriptor: socket, idleTimeout: Self.stallLimit)
            // An end of file made by `fail`'s shutdown is not the local peer's: no end marker.
            if failed { return }
            try sender.finish(timeout: Self.stallLimit)
        } catch {
            fail("\(error)")
        }
    }

    private func relayIncoming() {
        do {
            _ = try receiver.relay(toFileDescriptor: socket, idleTimeout: nil)
            if failed { return }
            shutdown(socket, Int32(SHUT_WR))
        } catch {
            // The peer's end of the session is gone: if it said why, that is the cause.
            fail(session.unreadPeerAbort() ?? "\(error)")
        }
    }

    /// The calling thread's CPU time (user + system).
    static func threadCPUTime() -> Duration {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return .seconds(time.tv_sec) + .nanoseconds(time.tv_nsec)
    }

    /// The first failure wins; it tells the peer, wakes both directions (the router's waits
    /// and the socket's blocked read or write) and leaves them to end.
    private func fail(_ reason: String) {
        let first = failure.withLock { state -> Bool in
            guard state == nil else { return false }
            state = reason
            return true
        }
        guard first else { return }
        session.abort(reason)
        session.router.close()
        shutdown(socket, Int32(SHUT_RDWR))
    }
}
