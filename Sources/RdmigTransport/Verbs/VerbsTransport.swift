#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// The `verbs` backend: RDMA CM (RDMA_PS_TCP) connection setup and one RC queue pair per
/// connection, over InfiniBand, RoCE (v1/v2) or iWARP, IPv4 or IPv6 addresses.
///
/// Connection setup, as rdma-core's librdmacm/examples/rping.c does it: an event channel per
/// connection, `rdma_resolve_addr` and `rdma_resolve_route` bounded by the connect timeout,
/// the PD/CQ/QP on the resolved device, then `rdma_connect` with this side's
/// `ConnectionHello` in the private data and the listener's hello back in ESTABLISHED.
/// Without an RDMA device every call fails with `.deviceUnavailable` saying so.
public struct VerbsTransport: TransportBackend {
    public let kind = TransportBackendKind.verbs
    /// Register memory with IBV_ACCESS_RELAXED_ORDERING (perftest's default; libibverbs drops
    /// the flag where the kernel cannot honour it). Off is perftest's --disable_pcie_relaxed.
    public var relaxedOrdering: Bool
    /// rdma_listen backlog: connect requests the CM holds before the listener thread takes them.
    public var listenBacklog: Int32

    /// The hello this side sends; another version only in tests of the version check.
    var hello = ConnectionHello()

    public init(relaxedOrdering: Bool = true, listenBacklog: Int32 = 64) {
        self.relaxedOrdering = relaxedOrdering
        self.listenBacklog = listenBacklog
    }

    public func listen(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportListener {
        try listenVerbs(on: endpoint, options: options)
    }

    public func connect(to endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportConnection {
        try connectVerbs(to: endpoint, options: options)
    }

    /// `listen` with the concrete listener type.
    public func listenVerbs(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> VerbsListener {
        // The owner destroys the id before its channel if a step below throws.
        let owner = VerbsEndpoint(channel: try CMEventChannel())
        owner.identifier = try CMIdentifier(channel: owner.channel)
        guard let identifier = owner.identifierPointer else {
            throw .connectionClosed(detail: "internal: no CM id")
        }
        var address = try SocketAddress.resolve(endpoint, passive: true)
        let bound = address.withSockaddr { rdma_bind_addr(identifier, $0) }
        if bound != 0 {
            throw VerbsTransport.bindFailure(errno: SystemCall.currentErrno(), endpoint: endpoint)
        }
        // A specific address must be on an RDMA device; a wildcard listens on all of them.
        if identifier.pointee.verbs == nil && !address.isWildcard {
            throw VerbsTransport.notOnDevice(endpoint)
        }
        if rdma_listen(identifier, listenBacklog) != 0 {
            throw .system(SystemCallError(call: "rdma_listen", errno: SystemCall.currentErrno(), context: "\(endpoint)"))
        }
        let port = UInt16(bigEndian: rdma_get_src_port(identifier))
        let local = TransportEndpoint(host: endpoint.host, port: port)
        let queue = try AcceptQueue()
        let stopBell: Doorbell
        do {
            stopBell = try Doorbell()
        } catch {
            throw .system(error)
        }
        guard let listening = owner.identifier.take() else {
            throw .connectionClosed(detail: "internal: no CM id")
        }
        let listener = VerbsListener(channel: owner.channel, identifier: listening, localEndpoint: local, queue: queue, stopBell: stopBell)
        try listener.start(options: options, relaxedOrdering: relaxedOrdering, hello: hello)
        return listener
    }

    /// `connect` with the concrete connection type (post lists, staging cache).
    public func connectVerbs(to endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> VerbsConnection {
        let deadline = ContinuousClock.now.advanced(by: options.connectTimeout)
        let owner = VerbsEndpoint(channel: try CMEventChannel())
        owner.identifier = try CMIdentifier(channel: owner.channel)
        guard let identifier = owner.identifierPointer else {
            throw .connectionClosed(detail: "internal: no CM id")
        }
        var address = try SocketAddress.resolve(endpoint, passive: false)

        let resolveAddress = address.withSockaddr { rdma_resolve_addr(identifier, nil, $0, VerbsTransport.stepTimeout(deadline)) }
        if resolveAddress != 0 {
            throw VerbsTransport.resolveFailure(call: "rdma_resolve_addr", errno: SystemCall.currentErrno(), endpoint: endpoint)
        }
        _ = try expect(RDMA_CM_EVENT_ADDR_RESOLVED, on: owner.channel, until: deadline, endpoint: endpoint, step: "address resolution", options: options)

        if let trafficClass = options.trafficClass {
            // Before route resolution, which puts it in the path (rdma_set_option(3)); the
            // accepting side's path is built from this side's request, so it follows.
            var tos = trafficClass
            if rdma_set_option(identifier, Int32(RDMA_OPTION_ID), Int32(RDMA_OPTION_ID_TOS), &tos, MemoryLayout<UInt8>.size) != 0 {
                throw .system(SystemCallError(call: "rdma_set_option(RDMA_OPTION_ID_TOS)", errno: SystemCall.currentErrno(),
                                              context: "traffic class \(trafficClass) for \(endpoint)"))
            }
        }
        if rdma_resolve_route(identifier, VerbsTransport.stepTimeout(deadline)) != 0 {
            throw VerbsTransport.resolveFailure(call: "rdma_resolve_route", errno: SystemCall.currentErrno(), endpoint: endpoint)
        }
        _ = try expect(RDMA_CM_EVENT_ROUTE_RESOLVED, on: owner.channel, until: deadline, endpoint: endpoint, step: "route resolution", options: options)

        let resources = QueuePairResources()
        owner.resources = resources
        try resources.build(identifier: identifier, options: options)

        var parameters = rdma_conn_param()
        // One outstanding RDMA READ/atomic each way is all rdmig asks (it only writes); rping
        // uses the same (rping_init_conn_param). Retry counts 7/7 as rping and perftest
        // (ctx_modify_qp_to_rts): 7 RNR retries means "forever", so a SEND waits for the
        // peer's receive instead of failing the connection.
        parameters.initiator_depth = min(1, resources.maxReadAtomicsOut)
        parameters.responder_resources = min(1, resources.maxReadAtomicsIn)
        parameters.retry_count = 7
        parameters.rnr_retry_count = 7
        let connected = hello.encoded().withUnsafeBytes { bytes -> Int32 in
            parameters.private_data = bytes.baseAddress
            parameters.private_data_len = UInt8(bytes.count)
            return rdma_connect(identifier, &parameters)
        }
        if connected != 0 {
            throw .system(SystemCallError(call: "rdma_connect", errno: SystemCall.currentErrno(), context: "\(endpoint)"))
        }
        let established = try expect(RDMA_CM_EVENT_ESTABLISHED, on: owner.channel, until: deadline, endpoint: endpoint, step: "connection setup", options: options)

        let peerHello: ConnectionHello
        do {
            peerHello = try ConnectionHello(decoding: established.privateData)
        } catch {
            _ = rdma_disconnect(identifier)
            throw .protocolViolation(detail: "\(endpoint) accepted the RDMA connection without an rdmig hello: \(error)")
        }
        guard ConnectionHello.supportedVersions.contains(peerHello.version) else {
            // The listener accepted, so only this side can refuse: disconnect before any
            // memory is registered and say which versions met.
            _ = rdma_disconnect(identifier)
            throw .protocolViolation(detail: "the listener at \(endpoint) answered with "
                + ConnectionHello.versionMismatchMessage(peer: peerHello.version))
        }
        return try VerbsConnection.establish(endpoint: owner, peerHello: peerHello, relaxedOrdering: relaxedOrdering)
    }

    /// Waits for `expected` on a connecting id; any other event is the reason connect fails.
    private func expect(
        _ expected: rdma_cm_event_type, on channel: CMEventChannel, until deadline: ContinuousClock.Instant,
        endpoint: TransportEndpoint, step: String, options: TransportOptions
    ) throws(TransportError) -> CMEvent {
        guard let event = try channel.waitForEvent(until: deadline) else {
            throw .timedOut(operation: "connect to \(endpoint) (\(step))", after: options.connectTimeout)
        }
        guard event.type == expected else {
            throw VerbsErrorMapping.connectFailure(event, endpoint: endpoint, step: step)
        }
        return event
    }

    /// rdma_resolve_addr/route take milliseconds; give each step what is left of the
    /// connect timeout (at least 1 ms so the CM never gets 0, which it treats as its default).
    static func stepTimeout(_ deadline: ContinuousClock.Instant) -> Int32 {
        max(1, PollTimeout.milliseconds(until: deadline))
    }

    static func notOnDevice(_ endpoint: TransportEndpoint) -> TransportError {
        .deviceUnavailable(reason: "\(endpoint.host) is not an address of an RDMA device: listen on the IP of an "
            + "RDMA-capable interface (see `rdmig probe`) or use the tcp backend")
    }

    static func bindFailure(errno error: Int32, endpoint: TransportEndpoint) -> TransportError {
        switch error {
        case ENODEV, EADDRNOTAVAIL:
            return notOnDevice(endpoint)
        default:
            return .system(SystemCallError(call: "rdma_bind_addr", errno: error, context: "\(endpoint)"))
        }
    }

    static func resolveFailure(call: String, errno error: Int32, endpoint: TransportEndpoint) -> TransportError {
        switch error {
        case ENODEV, EADDRNOTAVAIL, ENETUNREACH, EHOSTUNREACH:
            return .unreachable(endpoint, reason: "\(call) failed with \(SystemCallError.name(of: error)): no RDMA device "
                + "routes to it (see `rdmig probe`)")
        default:
            return .system(SystemCallError(call: call, errno: error, context: "\(endpoint)"))
        }
    }
}
