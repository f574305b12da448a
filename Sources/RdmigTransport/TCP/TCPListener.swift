#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// A listening socket of the `tcp` backend. `accept` exchanges preambles before it returns a
/// connection, so a peer that is not an rdmig tcp transport of the same version is refused here.
public final class TCPListener: TransportListener, @unchecked Sendable {
    public let localEndpoint: TransportEndpoint
    private let fd: Int32
    private let options: TransportOptions
    private let closeBell: Doorbell
    private let closed = Atomic<Bool>(false)

    init(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) {
        do {
            closeBell = try Doorbell()
        } catch {
            throw .system(error)
        }
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
            var milliseconds: Int32 = -1
            if let deadline {
                let remaining = deadline - ContinuousClock.now
                if remaining <= .zero { throw .timedOut(operation: "accept on \(localEndpoint)", after: timeout ?? .zero) }
                milliseconds = Int32(clamping: Int64((remaining.seconds * 1000).rounded(.up)))
            }
            var descriptors = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0),
                               pollfd(fd: closeBell.fileDescriptor, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&descriptors, 2, milliseconds)
            if ready < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                throw .system(SystemCallError(call: "poll", errno: error, context: "accept on \(localEndpoint)"))
            }
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
            do throws(TransportError) {
                let peer = try TCPSocket.peerEndpoint(of: connected)
                try TCPSocket.configureDataPath(connected, peer, trafficClass: options.trafficClass)
                try TCPSocket.exchangePreambles(connected, peer: peer, deadline: ContinuousClock.now + options.connectTimeout,
                                                timeout: options.connectTimeout)
                if options.socketBufferBytes == nil { TCPSocket.sizeSendBufferForRoundTrip(connected, peer) }
            } catch {
                Glibc.close(connected)
                throw error
            }
            return try TCPConnection(fd: connected, options: options)
        }
    }

    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        closeBell.forceRing()
        // On Linux shutdown() of a listening socket stops listening (inet_csk_listen_stop): new
        // connection attempts are refused at once.
        shutdown(fd, Int32(SHUT_RDWR))
    }
}
