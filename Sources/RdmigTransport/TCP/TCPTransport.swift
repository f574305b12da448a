#if canImport(Glibc)
import Glibc
#endif

/// The `tcp` backend: the Transport API's RDMA semantics over TCP sockets (IPv4 and IPv6).
///
/// Every connection starts with a preamble in both directions (`TCPPreamble`), then carries
/// frames (`TCPFrameHeader`): WRITE, SEND, ACK, ERROR, CLOSE. A WRITE is checked against the
/// receiver's registrations before its payload is read, and the payload is read straight into
/// the registered memory. Several connections to one listener work independently, for
/// parallelism across cores.
public struct TCPTransport: TransportBackend {
    public init() {}

    public var kind: TransportBackendKind { .tcp }

    public func listen(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportListener {
        try listener(on: endpoint, options: options)
    }

    public func connect(to endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportConnection {
        try connection(to: endpoint, options: options)
    }

    /// `listen`, typed.
    public func listener(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> TCPListener {
        try TCPTransport.validate(options)
        return try TCPListener(on: endpoint, options: options)
    }

    /// `connect`, typed.
    public func connection(to endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> TCPConnection {
        try TCPTransport.validate(options)
        let deadline = ContinuousClock.now + options.connectTimeout
        let fd = try TCPSocket.connect(to: endpoint, deadline: deadline, timeout: options.connectTimeout,
                                       trafficClass: options.trafficClass, bufferBytes: options.socketBufferBytes)
        do {
            try TCPSocket.exchangePreambles(fd, peer: endpoint, deadline: deadline, timeout: options.connectTimeout)
            if options.socketBufferBytes == nil { TCPSocket.sizeSendBufferForRoundTrip(fd, endpoint) }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return try TCPConnection(fd: fd, options: options)
    }

    static func validate(_ options: TransportOptions) throws(TransportError) {
        guard options.sendQueueDepth > 0, options.receiveQueueDepth > 0 else {
            throw .invalidWorkRequest(detail: "queue depths must be at least 1 (send \(options.sendQueueDepth), "
                + "receive \(options.receiveQueueDepth))")
        }
        if let bytes = options.socketBufferBytes, !TransportOptions.socketBufferBytesRange.contains(bytes) {
            throw .invalidWorkRequest(detail: "socket buffer of \(bytes) bytes is out of range: \(TransportOptions.socketBufferRange)")
        }
        guard options.maxSendBytes >= 0 else {
            throw .invalidWorkRequest(detail: "maxSendBytes must not be negative (\(options.maxSendBytes))")
        }
    }
}
