#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// The listener's one thread: it reads the listening id's event channel and handles each
/// event as it comes, as rping's cm_thread does (rdma-core librdmacm/examples/rping.c).
///
/// - CONNECT_REQUEST: checks the client's hello first. A request without the rdmig magic or
///   with another protocol version is rejected with a `ConnectionRejection` in the reject
///   private data and its id destroyed: nothing was created for it. Otherwise it builds the
///   child's PD, CQ and QP and accepts with this side's hello. Accepting here, not in
///   `accept()`, lets a client's connect finish before the server calls accept, as TCP's
///   backlog does.
/// - ESTABLISHED for a child: moves the child id to its own event channel
///   (rdma_migrate_id), so the connection outlives the listener and its later events
///   (DISCONNECTED, ...) reach its own monitor, and queues it for `accept`.
/// - REJECTED, CONNECT_ERROR, UNREACHABLE, DISCONNECTED, DEVICE_REMOVAL for a child that
///   never got established, or no ESTABLISHED within connectTimeout: releases it.
/// - DEVICE_REMOVAL for the listening id: `accept` reports the device as gone.
struct ListenerEventLoop {
    struct Pending {
        let endpoint: VerbsEndpoint
        let hello: ConnectionHello
        let deadline: ContinuousClock.Instant
    }

    struct IdentifierHandle: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<rdma_cm_id>
    }

    let channel: CMEventChannel
    let listenIdentifier: IdentifierHandle
    let listenEndpoint: TransportEndpoint
    let queue: AcceptQueue
    let options: TransportOptions
    let relaxedOrdering: Bool
    /// This side's hello, sent in the accept.
    let hello: ConnectionHello
    private var pending: [UInt: Pending] = [:]

    init(
        channel: CMEventChannel, listenIdentifier: IdentifierHandle, listenEndpoint: TransportEndpoint,
        queue: AcceptQueue, options: TransportOptions, relaxedOrdering: Bool, hello: ConnectionHello
    ) {
        self.hello = hello
        self.channel = channel
        self.listenIdentifier = listenIdentifier
        self.listenEndpoint = listenEndpoint
        self.queue = queue
        self.options = options
        self.relaxedOrdering = relaxedOrdering
    }

    mutating func run(stop: Doorbell) {
        defer { pending.removeAll() }
        var descriptors = [
            pollfd(fd: channel.fileDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stop.fileDescriptor, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            let earliest = pending.values.map(\.deadline).min()
            for index in descriptors.indices { descriptors[index].revents = 0 }
            let ready = poll(&descriptors, nfds_t(descriptors.count), PollTimeout.milliseconds(until: earliest))
            if ready < 0 {
                if SystemCall.currentErrno() == EINTR { continue }
                queue.fail(.system(SystemCallError(call: "poll", errno: SystemCall.currentErrno(), context: "verbs listener on \(listenEndpoint)")))
                return
            }
            if descriptors[1].revents != 0 { return }
            do {
                while let event = try channel.nextEvent() {
                    handle(event)
                }
            } catch {
                queue.fail(error)
                return
            }
            expire()
        }
    }

    private mutating func handle(_ event: CMEvent) {
        let key = UInt(bitPattern: event.id)
        if event.type == RDMA_CM_EVENT_CONNECT_REQUEST {
            request(event)
            return
        }
        if event.id == listenIdentifier.pointer {
            if event.type == RDMA_CM_EVENT_DEVICE_REMOVAL {
                queue.fail(.deviceUnavailable(reason: "the RDMA device under \(listenEndpoint) was removed (RDMA_CM_EVENT_DEVICE_REMOVAL)"))
            }
            return
        }
        switch event.type {
        case RDMA_CM_EVENT_ESTABLISHED:
            established(key)
        case RDMA_CM_EVENT_REJECTED, RDMA_CM_EVENT_CONNECT_ERROR, RDMA_CM_EVENT_UNREACHABLE,
             RDMA_CM_EVENT_DISCONNECTED, RDMA_CM_EVENT_DEVICE_REMOVAL:
            pending[key] = nil
        default:
            // TIMEWAIT_EXIT / ADDR_CHANGE for a child are not actionable here.
            break
        }
    }

    private mutating func request(_ event: CMEvent) {
        guard let child = event.id else { return }
        let clientHello: ConnectionHello
        switch ConnectionHello.evaluate(request: event.privateData) {
        case .failure(let rejection):
            reject(child, rejection)
            let refused = CMIdentifier(adopting: child)
            _ = consume refused
            return
        case .success(let peerHello):
            clientHello = peerHello
        }
        let endpoint = VerbsEndpoint(channel: channel)
        endpoint.identifier = CMIdentifier(adopting: child)
        let resources = QueuePairResources()
        endpoint.resources = resources
        do {
            try resources.build(identifier: child, options: options)
        } catch {
            reject(child, ConnectionRejection(reason: .resourcesUnavailable, message: "the listener could not create a queue pair: \(error)"))
            return
        }
        var parameters = rdma_conn_param()
        // rdma_accept(3): responder resources at most the device's max_qp_rd_atom and
        // preferably the request's initiator depth; initiator depth at most
        // max_qp_init_rd_atom and the request's responder resources.
        parameters.responder_resources = min(event.initiatorDepth, resources.maxReadAtomicsIn)
        parameters.initiator_depth = min(event.responderResources, resources.maxReadAtomicsOut)
        // 7 means "retry forever" on receiver-not-ready, as rping and perftest use.
        parameters.rnr_retry_count = 7
        let ourHello = self.hello.encoded()
        let accepted = ourHello.withUnsafeBytes { bytes -> Int32 in
            parameters.private_data = bytes.baseAddress
            parameters.private_data_len = UInt8(bytes.count)
            return rdma_accept(child, &parameters)
        }
        if accepted != 0 { return }
        pending[UInt(bitPattern: child)] = Pending(
            endpoint: endpoint, hello: clientHello, deadline: ContinuousClock.now.advanced(by: options.connectTimeout))
    }

    private func reject(_ child: UnsafeMutablePointer<rdma_cm_id>, _ rejection: ConnectionRejection) {
        let bytes = rejection.encoded()
        _ = bytes.withUnsafeBytes { rdma_reject(child, $0.baseAddress, UInt8($0.count)) }
    }

    private mutating func established(_ key: UInt) {
        guard let entry = pending.removeValue(forKey: key), let child = entry.endpoint.identifierPointer else { return }
        do {
            let own = try CMEventChannel()
            // Blocks until the id's events on this channel are acked, which nextEvent did.
            if rdma_migrate_id(child, own.pointer) != 0 {
                throw TransportError.system(SystemCallError(call: "rdma_migrate_id", errno: SystemCall.currentErrno()))
            }
            entry.endpoint.channel = own
            let connection = try VerbsConnection.establish(endpoint: entry.endpoint, peerHello: entry.hello, relaxedOrdering: relaxedOrdering)
            queue.push(connection)
        } catch {
            // Dropping the endpoint destroys the QP and the id: the client sees DISCONNECTED.
        }
    }

    private mutating func expire() {
        let now = ContinuousClock.now
        for (key, entry) in pending where entry.deadline <= now {
            pending[key] = nil
        }
    }
}
