#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem
import Synchronization

/// One RC queue pair with its completion queue, connected through RDMA CM: the `verbs`
/// backend's `TransportConnection`.
///
/// The data path follows perftest (src/perftest_resources.c): work requests and
/// scatter/gather entries live in storage allocated once per connection and are refilled in
/// place, so posting allocates nothing; only WRs the caller marks signalled complete on
/// success; the CQ is polled in batches of 16 (perftest's CTX_POLL_BATCH); a post list chains
/// pre-built WRs with `.next` and rings the doorbell once (`postWrites`).
///
/// Threading is the verbs rule: one thread posts sends, one posts receives (may be the
/// same), one polls; each of them alone. `close()` and `failure` may be used from any thread.
/// The verbs objects are released in `deinit`, when no thread can be using them any more.
public final class VerbsConnection: TransportConnection, @unchecked Sendable {
    public let backend = TransportBackendKind.verbs
    public let localEndpoint: TransportEndpoint
    public let peerEndpoint: TransportEndpoint
    /// The options as the device granted them (queue depths cut to its limits).
    public let options: TransportOptions
    /// The RDMA device the connection runs on (`rxe0`, `mlx5_0`).
    public let deviceName: String
    /// The peer's hello from the CM private data.
    public let peerHello: ConnectionHello
    /// This side's RNR NAK timer and local ACK timeout as the QP reports them once connected
    /// (`requestedRNRTimer`, `QueuePairResources.requestedAckTimeout`; IB encodings: RNR 12 is
    /// 0.64 ms and 0 is 655.36 ms, ACK timeout t is 4.096 µs × 2^t). nil when the QP could
    /// not be queried; what went wrong setting either is in `timerProblems`.
    public private(set) var responderRNRTimer: UInt8?
    public private(set) var localAckTimeout: UInt8?
    /// The traffic class in the QP's address vector (its GRH), as the QP reports it.
    public private(set) var trafficClass: UInt8?
    public private(set) var timerProblems: [String] = []

    /// The RNR NAK timer this side asks for: 0.64 ms, perftest's MIN_RNR_TIMER. The kernel's IB
    /// CM moves an RC QP to RTR with min_rnr_timer 0 (drivers/infiniband/core/cm.c,
    /// cm_init_qp_rtr_attr), and 0 encodes the longest wait there is, 655.36 ms: a SEND that
    /// found no receive posted here would wait that long before its retry — thirteen times a
    /// 50 ms downtime limit. RTS to RTS may change it (an optional attribute of that
    /// transition for RC QPs).
    public static let requestedRNRTimer: UInt8 = 12
    /// The local ACK timeout asked of rdma_cm before connect and accept (see
    /// `QueuePairResources.requestedAckTimeout`).
    public static var requestedAckTimeout: UInt8 { QueuePairResources.requestedAckTimeout }

    /// perftest's CTX_POLL_BATCH.
    static let pollBatch = 16
    /// ibv_ack_cq_events takes a mutex (ibv_get_cq_event(3)): ack in batches.
    static let completionEventAckBatch: UInt32 = 64
    /// Receive WR ids carry this bit, so an error completion (whose opcode is undefined,
    /// ibv_poll_cq(3)) is still attributed to the right queue on the shared CQ.
    static let receiveTag: UInt64 = 1 << 63

    let state: VerbsConnectionState
    private let endpoint: VerbsEndpoint
    private let registrations: RegistrationCache
    private var monitor: ConnectionMonitor?
    private let relaxedOrdering: Bool

    private let queuePair: UnsafeMutablePointer<ibv_qp>
    private let completionQueue: UnsafeMutablePointer<ibv_cq>
    private let completionChannel: UnsafeMutablePointer<ibv_comp_channel>
    private let protectionDomain: UnsafeMutablePointer<ibv_pd>
    private let context: UnsafeMutablePointer<ibv_context>

    struct SendSlot {
        var id: UInt64
        var length: Int
        var kind: Completion.Kind
    }

    // Send side: touched by the sending thread; `sendRetired` by the poller.
    private let sendDepth: Int
    private let sendRequests: UnsafeMutablePointer<ibv_send_wr>
    private let sendElements: UnsafeMutablePointer<ibv_sge>
    private let sendSlots: UnsafeMutablePointer<SendSlot>
    private var sendPosted: UInt64 = 0
    /// Published with release ordering after a slot is written, before the WR is posted; the
    /// poller reads it with acquire ordering before reading the slot of a completion.
    private let sendPublished = Atomic<UInt64>(0)
    /// One past the last send WR known complete: a signalled completion retires every
    /// unsignalled WR before it (RC completes a send queue in order).
    private let sendRetired = Atomic<UInt64>(0)

    // Receive side.
    private let receiveDepth: Int
    private let receiveRequest: UnsafeMutablePointer<ibv_recv_wr>
    private let receiveElement: UnsafeMutablePointer<ibv_sge>
    private let receiveSlots: UnsafeMutablePointer<UInt64>
    private var receivePosted: UInt64 = 0
    private let receivePublished = Atomic<UInt64>(0)
    private let receiveRetired = Atomic<UInt64>(0)

    // Polling side.
    private let workCompletions: UnsafeMutablePointer<ibv_wc>
    private var notificationArmed = false
    private var unackedCompletionEvents: UInt32 = 0

    private init(
        endpoint: VerbsEndpoint, resources: QueuePairResources, state: VerbsConnectionState,
        local: TransportEndpoint, peer: TransportEndpoint, peerHello: ConnectionHello, relaxedOrdering: Bool
    ) {
        self.endpoint = endpoint
        self.state = state
        self.registrations = resources.registrations
        self.options = resources.effectiveOptions
        self.deviceName = resources.deviceName
        self.localEndpoint = local
        self.peerEndpoint = peer
        self.peerHello = peerHello
        self.relaxedOrdering = relaxedOrdering
        queuePair = resources.queuePairPointer!
        completionQueue = resources.completionQueuePointer!
        completionChannel = resources.completionChannelPointer!
        protectionDomain = resources.protectionDomainPointer!
        context = resources.context!

        sendDepth = options.sendQueueDepth
        sendRequests = .allocate(capacity: sendDepth)
        sendRequests.initialize(repeating: ibv_send_wr(), count: sendDepth)
        sendElements = .allocate(capacity: sendDepth)
        sendElements.initialize(repeating: ibv_sge(), count: sendDepth)
        sendSlots = .allocate(capacity: sendDepth)
        sendSlots.initialize(repeating: SendSlot(id: 0, length: 0, kind: .write), count: sendDepth)

        receiveDepth = options.receiveQueueDepth
        receiveRequest = .allocate(capacity: 1)
        receiveRequest.initialize(to: ibv_recv_wr())
        receiveElement = .allocate(capacity: 1)
        receiveElement.initialize(to: ibv_sge())
        receiveSlots = .allocate(capacity: receiveDepth)
        receiveSlots.initialize(repeating: 0, count: receiveDepth)

        workCompletions = .allocate(capacity: VerbsConnection.pollBatch)
        workCompletions.initialize(repeating: ibv_wc(), count: VerbsConnection.pollBatch)
    }

    /// Takes over a connected endpoint (id with QP, ESTABLISHED seen) and starts watching it.
    static func establish(
        endpoint: VerbsEndpoint, peerHello: ConnectionHello, relaxedOrdering: Bool
    ) throws(TransportError) -> VerbsConnection {
        guard let identifier = endpoint.identifierPointer, let resources = endpoint.resources,
              let context = resources.context, resources.queuePairPointer != nil
        else {
            throw .connectionClosed(detail: "internal: a verbs connection needs an id with a queue pair")
        }
        let peer = endpoint.identifier?.peerEndpoint ?? TransportEndpoint(host: "unknown", port: 0)
        let local = endpoint.identifier?.localEndpoint ?? TransportEndpoint(host: "unknown", port: 0)
        let state = VerbsConnectionState(peer: peer, deviceName: resources.deviceName, identifier: identifier)
        let connection = VerbsConnection(
            endpoint: endpoint, resources: resources, state: state, local: local, peer: peer,
            peerHello: peerHello, relaxedOrdering: relaxedOrdering)
        connection.applyRNRTimerAndReadBack(ackTimeoutProblem: resources.ackTimeoutProblem)
        AsyncEventRouter.shared.register(
            queuePair: connection.queuePair, completionQueue: connection.completionQueue, context: context, state: state)
        connection.monitor = try ConnectionMonitor(
            channel: endpoint.channel, context: context, queuePair: connection.queuePair, state: state,
            cpus: resources.effectiveOptions.threadCPUs)
        return connection
    }

    /// Sets this side's RNR NAK timer (see `requestedRNRTimer`) and reads back what the QP
    /// carries: that timer, the ACK timeout asked of rdma_cm, the traffic class. A provider
    /// that refuses leaves the connection working, with the long timer, and says so.
    private func applyRNRTimerAndReadBack(ackTimeoutProblem: String?) {
        if let ackTimeoutProblem { timerProblems.append(ackTimeoutProblem) }
        var attributes = ibv_qp_attr()
        attributes.min_rnr_timer = VerbsConnection.requestedRNRTimer
        let result = ibv_modify_qp(queuePair, &attributes, Int32(bitPattern: IBV_QP_MIN_RNR_TIMER.rawValue))
        if result != 0 {
            // ibv_modify_qp(3) returns the errno itself.
            timerProblems.append("ibv_modify_qp(IBV_QP_MIN_RNR_TIMER) failed: \(SystemCallError(call: "ibv_modify_qp", errno: result))")
        }
        var current = ibv_qp_attr()
        var initial = ibv_qp_init_attr()
        let mask = IBV_QP_MIN_RNR_TIMER.rawValue | IBV_QP_TIMEOUT.rawValue | IBV_QP_AV.rawValue
        let queried = ibv_query_qp(queuePair, &current, Int32(bitPattern: mask), &initial)
        if queried != 0 {
            timerProblems.append("ibv_query_qp(IBV_QP_MIN_RNR_TIMER | IBV_QP_TIMEOUT | IBV_QP_AV) failed: \(SystemCallError(call: "ibv_query_qp", errno: queried))")
            return
        }
        responderRNRTimer = current.min_rnr_timer
        localAckTimeout = current.timeout
        trafficClass = current.ah_attr.grh.traffic_class
    }

    deinit {
        state.closeLocally()
        monitor?.stop()
        AsyncEventRouter.shared.unregister(queuePair: queuePair)
        state.retireIdentifier()
        if unackedCompletionEvents > 0 {
            ibv_ack_cq_events(completionQueue, unackedCompletionEvents)
        }
        sendRequests.deallocate()
        sendElements.deallocate()
        sendSlots.deallocate()
        receiveRequest.deallocate()
        receiveElement.deallocate()
        receiveSlots.deallocate()
        workCompletions.deallocate()
        // `endpoint` goes after this body: QP, CQ, channel, MRs, PD, then the id, then the
        // CM channel (VerbsEndpoint and QueuePairResources order it).
    }

    public var failure: TransportError? { state.failure }

    public func close() {
        state.closeLocally()
    }

    // MARK: Registration

    /// ibv_access_flags for `access`. Remote write needs local write (ibv_reg_mr(3)). Relaxed
    /// ordering is asked for unless disabled, as perftest does unless --disable_pcie_relaxed:
    /// completions are still written in order after the data, so a completion still means
    /// the data is visible.
    func accessFlags(_ access: MemoryAccess) -> UInt32 {
        var flags: UInt32 = 0
        if access.contains(.localWrite) || access.contains(.remoteWrite) { flags |= IBV_ACCESS_LOCAL_WRITE.rawValue }
        if access.contains(.remoteWrite) { flags |= IBV_ACCESS_REMOTE_WRITE.rawValue }
        if access.contains(.remoteRead) { flags |= IBV_ACCESS_REMOTE_READ.rawValue }
        if relaxedOrdering { flags |= IBV_ACCESS_RELAXED_ORDERING.rawValue }
        return flags
    }

    public func register(_ memory: UnsafeMutableRawBufferPointer, access: MemoryAccess) throws(TransportError) -> MemoryRegistration {
        if state.isStopped.load(ordering: .relaxed) { throw state.closedError() }
        return try registrations.register(
            memory, access: access, flags: accessFlags(access), retained: false, protectionDomain: protectionDomain)
    }

    /// Registers a staging buffer through the registration cache: the same buffer gets the
    /// same MR every time, and it stays registered until the connection goes.
    public func registerStaging(_ memory: UnsafeMutableRawBufferPointer) throws(TransportError) -> MemoryRegistration {
        if state.isStopped.load(ordering: .relaxed) { throw state.closedError() }
        return try registrations.register(
            memory, access: .localWrite, flags: accessFlags(.localWrite), retained: true, protectionDomain: protectionDomain)
    }

    public func deregister(_ registration: MemoryRegistration) throws(TransportError) {
        try registrations.deregister(registration)
    }

    /// Memory regions this connection holds now.
    public var registeredRegionCount: Int { registrations.count }

    // MARK: Posting

    public func postWrite(_ local: LocalSlice, to remote: RemoteSlice, id: UInt64, signaled: Bool, immediate: UInt32?) throws(TransportError) {
        try checkPostable(count: 1)
        try fillSend(
            at: 0, local: local, opcode: immediate == nil ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_WRITE_WITH_IMM,
            remote: remote, id: id, signaled: signaled, immediate: immediate ?? 0, next: nil)
        try postSendList(count: 1)
    }

    public func postSend(_ local: LocalSlice, id: UInt64, signaled: Bool) throws(TransportError) {
        try checkPostable(count: 1)
        guard local.length <= options.maxSendBytes else {
            throw .invalidWorkRequest(detail: "SEND id \(id) of \(local.length) bytes exceeds maxSendBytes \(options.maxSendBytes)")
        }
        try fillSend(
            at: 0, local: local, opcode: IBV_WR_SEND, remote: RemoteSlice(address: 0, remoteKey: 0),
            id: id, signaled: signaled, immediate: 0, next: nil)
        try postSendList(count: 1)
    }

    /// Posts `requests` as one post list: WRs chained by `.next` in the pre-allocated storage,
    /// one ibv_post_send, one doorbell (perftest's --post_list). Either all fit in the send
    /// queue or none is posted (`.queueFull`). If the device refuses one midway, the ones
    /// before it were posted and will complete; the error says how many.
    public func postWrites(_ requests: UnsafeBufferPointer<VerbsWriteRequest>) throws(TransportError) {
        guard !requests.isEmpty else { return }
        try checkPostable(count: requests.count)
        for index in 0..<requests.count {
            let request = requests[index]
            try fillSend(
                at: index, local: request.local,
                opcode: request.immediate == nil ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_WRITE_WITH_IMM,
                remote: request.remote, id: request.id, signaled: request.signaled,
                immediate: request.immediate ?? 0,
                next: index + 1 < requests.count ? sendRequests + index + 1 : nil)
        }
        try postSendList(count: requests.count)
    }

    @inline(__always)
    private func checkPostable(count: Int) throws(TransportError) {
        if state.isStopped.load(ordering: .relaxed) { throw state.closedError() }
        let outstanding = Int(truncatingIfNeeded: sendPosted &- sendRetired.load(ordering: .acquiring))
        guard outstanding + count <= sendDepth else { throw .queueFull(queue: "send", depth: sendDepth) }
    }

    /// Fills WR `index` of the storage for sequence number `sendPosted + index`.
    @inline(__always)
    private func fillSend(
        at index: Int, local: LocalSlice, opcode: ibv_wr_opcode, remote: RemoteSlice,
        id: UInt64, signaled: Bool, immediate: UInt32, next: UnsafeMutablePointer<ibv_send_wr>?
    ) throws(TransportError) {
        guard local.length >= 0, local.length <= Int(UInt32.max) else {
            throw .invalidWorkRequest(detail: "work request id \(id) has length \(local.length)")
        }
        let sequence = sendPosted &+ UInt64(index)
        let element = sendElements + index
        // A zero-length SGE means 2 GiB on some devices (mlx4/mlx5): a zero-length write
        // (a pure notification with an immediate) carries no SGE at all.
        element.pointee.addr = local.address
        element.pointee.length = UInt32(local.length)
        element.pointee.lkey = local.localKey
        let request = sendRequests + index
        request.pointee.wr_id = sequence
        request.pointee.next = next
        request.pointee.sg_list = element
        request.pointee.num_sge = local.length == 0 ? 0 : 1
        request.pointee.opcode = opcode
        request.pointee.send_flags = signaled ? IBV_SEND_SIGNALED.rawValue : 0
        request.pointee.imm_data = immediate.bigEndian
        request.pointee.wr.rdma.remote_addr = remote.address
        request.pointee.wr.rdma.rkey = remote.remoteKey
        sendSlots[Int(sequence % UInt64(sendDepth))] = SendSlot(
            id: id, length: local.length, kind: opcode == IBV_WR_SEND ? .send : .write)
    }

    @inline(__always)
    private func postSendList(count: Int) throws(TransportError) {
        let first = sendPosted
        sendPublished.store(first &+ UInt64(count), ordering: .releasing)
        var bad: UnsafeMutablePointer<ibv_send_wr>?
        let result = ibv_post_send(queuePair, sendRequests, &bad)
        if result == 0 {
            sendPosted = first &+ UInt64(count)
            return
        }
        try postSendFailed(result, first: first, count: count, bad: bad)
    }

    @inline(never)
    private func postSendFailed(_ result: Int32, first: UInt64, count: Int, bad: UnsafeMutablePointer<ibv_send_wr>?) throws(TransportError) {
        let accepted = bad.map { sendRequests.distance(to: $0) } ?? 0
        sendPosted = first &+ UInt64(max(0, accepted))
        sendPublished.store(sendPosted, ordering: .releasing)
        let failedID = sendSlots[Int((first &+ UInt64(max(0, accepted))) % UInt64(sendDepth))].id
        let error = VerbsErrorMapping.postFailure(result, queue: "send", depth: sendDepth, id: failedID)
        guard count > 1, accepted > 0 else { throw error }
        throw .invalidWorkRequest(detail: "post list: \(accepted) of \(count) work requests were posted, then: \(error)")
    }

    public func postReceive(_ local: LocalSlice, id: UInt64) throws(TransportError) {
        if state.isStopped.load(ordering: .relaxed) { throw state.closedError() }
        let sequence = receivePosted
        let outstanding = Int(truncatingIfNeeded: sequence &- receiveRetired.load(ordering: .acquiring))
        guard outstanding < receiveDepth else { throw .queueFull(queue: "receive", depth: receiveDepth) }
        guard local.length >= 0, local.length <= Int(UInt32.max) else {
            throw .invalidWorkRequest(detail: "receive id \(id) has length \(local.length)")
        }
        receiveSlots[Int(sequence % UInt64(receiveDepth))] = id
        receiveElement.pointee.addr = local.address
        receiveElement.pointee.length = UInt32(local.length)
        receiveElement.pointee.lkey = local.localKey
        receiveRequest.pointee.wr_id = VerbsConnection.receiveTag | sequence
        receiveRequest.pointee.next = nil
        receiveRequest.pointee.sg_list = receiveElement
        receiveRequest.pointee.num_sge = local.length == 0 ? 0 : 1
        receivePublished.store(sequence &+ 1, ordering: .releasing)
        var bad: UnsafeMutablePointer<ibv_recv_wr>?
        let result = ibv_post_recv(queuePair, receiveRequest, &bad)
        if result != 0 {
            receivePublished.store(sequence, ordering: .releasing)
            throw VerbsErrorMapping.postFailure(result, queue: "receive", depth: receiveDepth, id: id)
        }
        receivePosted = sequence &+ 1
    }

    // MARK: Completions

    public func pollCompletions(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        var filled = 0
        while filled < buffer.count {
            let asked = Int32(min(buffer.count - filled, VerbsConnection.pollBatch))
            let polled = ibv_poll_cq(completionQueue, asked, workCompletions)
            if polled <= 0 {
                if polled < 0 { pollFailed(polled) }
                break
            }
            for index in 0..<Int(polled) {
                buffer[filled] = translate(workCompletions + index)
                filled += 1
            }
            if polled < asked { break }
        }
        return filled
    }

    @inline(__always)
    private func translate(_ wc: UnsafeMutablePointer<ibv_wc>) -> Completion {
        let requestID = wc.pointee.wr_id
        if requestID & VerbsConnection.receiveTag != 0 {
            let status = VerbsErrorMapping.status(wc.pointee.status, onReceive: true)
            let sequence = requestID & ~VerbsConnection.receiveTag
            _ = receivePublished.load(ordering: .acquiring)
            let id = receiveSlots[Int(sequence % UInt64(receiveDepth))]
            receiveRetired.store(sequence &+ 1, ordering: .releasing)
            var completion = Completion(id: id, kind: .receive, status: status)
            if status == .success {
                completion.byteCount = Int(wc.pointee.byte_len)
                if wc.pointee.opcode == IBV_WC_RECV_RDMA_WITH_IMM {
                    completion.kind = .receivedWriteWithImmediate
                    completion.immediate = UInt32(bigEndian: wc.pointee.imm_data)
                } else if wc.pointee.wc_flags & IBV_WC_WITH_IMM.rawValue != 0 {
                    completion.immediate = UInt32(bigEndian: wc.pointee.imm_data)
                }
            } else {
                completionFailed(wc.pointee.status, kind: .receive, id: id)
            }
            return completion
        }
        let status = VerbsErrorMapping.status(wc.pointee.status)
        _ = sendPublished.load(ordering: .acquiring)
        let slot = sendSlots[Int(requestID % UInt64(sendDepth))]
        sendRetired.store(requestID &+ 1, ordering: .releasing)
        if status != .success {
            completionFailed(wc.pointee.status, kind: slot.kind, id: slot.id)
        }
        return Completion(id: slot.id, kind: slot.kind, status: status, byteCount: slot.length)
    }

    @inline(never)
    private func completionFailed(_ status: ibv_wc_status, kind: Completion.Kind, id: UInt64) {
        if let failure = VerbsErrorMapping.failure(for: status, kind: kind, id: id, peer: peerEndpoint) {
            state.fail(failure, definitive: true)
        } else if status == IBV_WC_WR_FLUSH_ERR, !state.isStopped.load(ordering: .acquiring) {
            // A flush comes first only when the QP left RTS with no cause on this side: the
            // device refused a request from the peer (see `responderRefusal`).
            state.fail(VerbsErrorMapping.responderRefusal(peer: peerEndpoint, device: deviceName), definitive: false)
        }
    }

    @inline(never)
    private func pollFailed(_ result: Int32) {
        state.fail(.system(SystemCallError(call: "ibv_poll_cq", errno: result < -1 ? -result : EIO, context: deviceName)), definitive: true)
    }

    /// Waits up to `timeout` (nil: no limit) for at least one completion and returns 0 only
    /// when the time is up. In `.busyPoll` it spins on ibv_poll_cq; in `.event` it arms the
    /// CQ, polls once more, and sleeps on the completion channel.
    public func waitForCompletions(into buffer: UnsafeMutableBufferPointer<Completion>, timeout: Duration?) -> Int {
        let found = pollCompletions(into: buffer)
        if found > 0 || buffer.isEmpty { return found }
        let deadline = PollTimeout.deadline(after: timeout)
        switch options.completionMode {
        case .busyPoll:
            return spin(into: buffer, until: deadline)
        case .event:
            return sleep(into: buffer, until: deadline)
        }
    }

    private func spin(into buffer: UnsafeMutableBufferPointer<Completion>, until deadline: ContinuousClock.Instant?) -> Int {
        var iterations: UInt32 = 0
        while true {
            let found = pollCompletions(into: buffer)
            if found > 0 { return found }
            iterations &+= 1
            // Reading the clock costs more than an empty poll; look at it every 64 spins.
            if iterations & 63 == 0, let deadline, ContinuousClock.now >= deadline {
                return pollCompletions(into: buffer)
            }
        }
    }

    private func sleep(into buffer: UnsafeMutableBufferPointer<Completion>, until deadline: ContinuousClock.Instant?) -> Int {
        while true {
            if !notificationArmed {
                let armed = ibv_req_notify_cq(completionQueue, 0)
                if armed != 0 {
                    state.fail(.system(SystemCallError(call: "ibv_req_notify_cq", errno: armed, context: deviceName)), definitive: true)
                    return spin(into: buffer, until: deadline)
                }
                notificationArmed = true
                // A completion that arrived between the last poll and arming raises no event:
                // poll once more after arming (ibv_req_notify_cq(3); rping's cq_thread).
                let found = pollCompletions(into: buffer)
                if found > 0 { return found }
            }
            let timeout = PollTimeout.milliseconds(until: deadline)
            if timeout == 0 { return pollCompletions(into: buffer) }
            var descriptor = pollfd(fd: completionChannel.pointee.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, timeout)
            if ready < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                state.fail(.system(SystemCallError(call: "poll", errno: error, context: "completion channel")), definitive: true)
                return spin(into: buffer, until: deadline)
            }
            if ready > 0 { takeCompletionEvents() }
            let found = pollCompletions(into: buffer)
            if found > 0 { return found }
        }
    }

    private func takeCompletionEvents() {
        var cq: UnsafeMutablePointer<ibv_cq>?
        var cqContext: UnsafeMutableRawPointer?
        while ibv_get_cq_event(completionChannel, &cq, &cqContext) == 0 {
            notificationArmed = false
            unackedCompletionEvents += 1
        }
        if unackedCompletionEvents >= VerbsConnection.completionEventAckBatch {
            ibv_ack_cq_events(completionQueue, unackedCompletionEvents)
            unackedCompletionEvents = 0
        }
    }
}
