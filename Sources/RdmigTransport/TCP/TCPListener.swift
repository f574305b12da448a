#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigSystem
import Synchronization

/// A listening socket of the `tcp` backend. Each accepted socket exchanges preambles on a
/// thread of its own (at most `options.maximumPendingHandshakes` at once, each bounded by
/// `options.handshakeTimeout`), so a peer that connects and says nothing, or junk, never
/// holds up the next peer; `accept` hands out connections in the order their preambles
/// completed. A peer whose preamble fails is reported by `accept` as that peer's error
/// (`TransportError.rejectedByPeer` naming it) and the listener stays usable.
public final class TCPListener: TransportListener, @unchecked Sendable {
    public let localEndpoint: TransportEndpoint
    private let fd: Int32
    private let options: TransportOptions
    private let closeBell: Doorbell
    private let closed = Atomic<Bool>(false)
    private let pending: PendingPreambles

    /// Preambles in progress and their outcomes, shared with the threads running them (which
    /// may outlive the listener by up to the handshake timeout).
    final class PendingPreambles: @unchecked Sendable {
        let readyBell: Doorbell
        let state = Mutex<(running: Int, outcomes: [Result<TCPConnection, TransportError>], closed: Bool)>((0, [], false))

        init() throws(TransportError) {
            do { readyBell = try Doorbell() } catch { throw .system(error) }
        }

        /// A preamble thread's outcome (`running` counts the thread out) or, for a peer turned
        /// away before any thread ran, its refusal.
        func finish(_ outcome: Result<TCPConnection, TransportError>, ranThread: Bool = true) {
            let dropped: TCPConnection? = state.withLock { state in
                if ranThread { state.running -= 1 }
                if state.closed, case .success(let connection) = outcome { return connection }
                state.outcomes.append(outcome)
                return nil
            }
            dropped?.close()
            readyBell.forceRing()
        }
    }

    init(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) {
        do {
            closeBell = try Doorbell()
        } catch {
            throw .system(error)
        }
        pending = try PendingPreambles()
        let (fd, local) = try TCPSocket.listen(on: endpoint, bufferBytes: options.socketBufferBytes)
        self.fd = fd
        self.localEndpoint = local
        self.options = options
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    /// The descriptor stays open until deinit, so a concurrent `accept` never polls a number
    /// the process has reused; `close` stops the listening with shutdown().
    deinit { Glibc.close(fd) }

    public func accept(timeout: Duration?) throws(TransportError) -> any TransportConnection {
        try acceptConnection(timeout: timeout)
    }

    /// `accept`, typed.
    public func acceptConnection(timeout: Duration?) throws(TransportError) -> TCPConnection {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            guard !closed.load(ordering: .acquiring) else {
                throw .connectionClosed(detail: "the listener on \(localEndpoint) was closed")
            }
            let outcome = pending.state.withLock { state in state.outcomes.isEmpty ? nil : state.outcomes.removeFirst() }
            if let outcome { return try outcome.get() }
            var milliseconds: Int32 = -1
            if let deadline {
                let remaining = deadline - ContinuousClock.now
                if remaining <= .zero { throw .timedOut(operation: "accept on \(localEndpoint)", after: timeout ?? .zero) }
                milliseconds = Int32(clamping: Int64((remaining.seconds * 1000).rounded(.up)))
            }
            var descriptors = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: closeBell.fileDescriptor, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: pending.readyBell.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&descriptors, 3, milliseconds)
            if ready < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                throw .system(SystemCallError(call: "poll", errno: error, context: "accept on \(localEndpoint)"))
            }
            if descriptors[2].revents != 0 { pending.readyBell.drain() }
            guard ready > 0, descriptors[0].revents != 0, !closed.load(ordering: .acquiring) else { continue }
            // Glibc's module does not export accept4 (it needs _GNU_SOURCE); Linux's accept() does
            // not pass O_NONBLOCK on, and FD_CLOEXEC is set right after.
            let connected = Glibc.accept(fd, nil, nil)
            if connected < 0 {
                let error = SystemCall.currentErrno()
                // Gone before we took it, or taken by another accepting thread: wait again.
                if [EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED, EPROTO].contains(error) { continue }
                throw .system(SystemCallError(call: "accept4", errno: error, context: "accept on \(localEndpoint)"))
            }
            _ = fcntl(connected, F_SETFD, FD_CLOEXEC)
            startPreamble(connected)
        }
    }

    private func startPreamble(_ connected: Int32) {
        let limit = options.maximumPendingHandshakes
        let admitted = pending.state.withLock { state in
            guard state.running < limit else { return false }
            state.running += 1
            return true
        }
        let peer = try? TCPSocket.peerEndpoint(of: connected)
        guard admitted else {
            Glibc.close(connected)
            let who = peer.map { "\($0)" } ?? "a peer"
            pending.finish(.failure(.peerRefused(peer ?? localEndpoint, reason:
                "\(who) was closed at once: \(limit) connections are already in their handshake ([auth] max-unauthenticated)")),
                ranThread: false)
            return
        }
        let options = options
        let pending = pending
        let deadline = ContinuousClock.now + options.handshakeTimeout
        Thread.detachNewThread {
            do throws(TransportError) {
                guard let peer else {
                    throw TransportError.peerDisconnected(TransportEndpoint(host: "unknown", port: 0), detail: "gone before its preamble")
                }
                try TCPSocket.configureDataPath(connected, peer, trafficClass: options.trafficClass)
                try TCPSocket.exchangePreambles(connected, peer: peer, deadline: deadline, timeout: options.handshakeTimeout)
                if options.socketBufferBytes == nil { TCPSocket.sizeSendBufferForRoundTrip(connected, peer) }
            } catch {
                Glibc.close(connected)
                pending.finish(.failure(.peerRefused(peer ?? TransportEndpoint(host: "unknown", port: 0), reason: "\(error)")))
                return
            }
            // TCPConnection owns the descriptor from here, and closes it if it fails.
            pending.finish(Result { () throws(TransportError) -> TCPConnection in try TCPConnection(fd: connected, options: options) })
        }
    }

    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let unclaimed = pending.state.withLock { state in
            state.closed = true
            defer { state.outcomes = [] }
            return state.outcomes
        }
        for case .success(let connection) in unclaimed { connection.close() }
        closeBell.forceRing()
        // On Linux shutdown() of a listening socket stops listening (inet_csk_listen_stop): new
        // connection attempts are refused at once.
        shutdown(fd, Int32(SHUT_RDWR))
    }
}
