#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// Turns what libibverbs and librdmacm report (errno values, CM event statuses, work
/// completion statuses, async events) into the `TransportError`s every backend uses, worded
/// for the person who reads them. Pure functions, so they are unit-tested without a device.
enum VerbsErrorMapping {
    /// errno after a verbs call that returned NULL; some providers return NULL without
    /// setting it, which must not read as success.
    static func errnoOrUnknown() -> Int32 {
        let error = SystemCall.currentErrno()
        return error == 0 ? EIO : error
    }

    /// `rdma_create_event_channel` / `rdma_create_id` failures. Without a device librdmacm
    /// fails both with ENODEV (FACTS.md): that is "no RDMA here", not a crash.
    static func eventChannelFailure(errno error: Int32, call: String = "rdma_create_event_channel") -> TransportError {
        let failure = SystemCallError(call: call, errno: error)
        switch error {
        case ENODEV, ENOSYS:
            return .deviceUnavailable(reason: "\(call) failed with \(failure.errnoName): this machine has no RDMA device "
                + "(ibv_get_device_list finds none). Use the tcp backend (--backend tcp), or create one, "
                + "e.g. Soft-RoCE: `rdma link add rxe0 type rxe netdev eth0`")
        case ENOENT:
            return .deviceUnavailable(reason: "\(call) failed with ENOENT: /dev/infiniband/rdma_cm is missing; "
                + "load the RDMA CM user-space module (`modprobe rdma_ucm`)")
        case EACCES, EPERM:
            return .deviceUnavailable(reason: "\(call) failed with \(failure.errnoName): no permission to open "
                + "/dev/infiniband/rdma_cm; run as a user in the rdma group or as root")
        default:
            return .system(failure)
        }
    }

    /// `ibv_reg_mr` failures. The kernel pins registered pages against RLIMIT_MEMLOCK unless
    /// the process has CAP_IPC_LOCK (ib_umem_get), and fails with ENOMEM (EPERM on some
    /// kernels) when the limit is hit: say which limit, its value, and the fix.
    static func registrationFailure(errno error: Int32, length: Int) -> TransportError {
        let size = ByteCount(UInt64(length)).humanReadable
        switch error {
        case ENOMEM, EPERM:
            return .registrationFailed(detail: "ibv_reg_mr of \(size) failed with \(SystemCallError.name(of: error)): "
                + "\(memlockLimitDescription()) is too small to pin it. Raise it (LimitMEMLOCK=infinity in the "
                + "systemd unit, `ulimit -l unlimited` in the shell, memlock in /etc/security/limits.conf) "
                + "or run with CAP_IPC_LOCK")
        case EINVAL:
            return .registrationFailed(detail: "ibv_reg_mr of \(size) failed with EINVAL: the device refused the access "
                + "flags or the length (see `rdmig probe` for the device's max MR size)")
        case EFAULT:
            return .registrationFailed(detail: "ibv_reg_mr of \(size) failed with EFAULT: the buffer is not mapped memory")
        default:
            return .registrationFailed(detail: "ibv_reg_mr of \(size) failed: \(SystemCallError(call: "ibv_reg_mr", errno: error).reason) (\(SystemCallError.name(of: error)))")
        }
    }

    /// "the memlock limit (RLIMIT_MEMLOCK) is 8.00 MiB" with the current soft limit.
    static func memlockLimitDescription() -> String {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit) == 0 else {
            return "the memlock limit (RLIMIT_MEMLOCK, unreadable)"
        }
        if limit.rlim_cur == rlim_t.max {
            return "the memlock limit (RLIMIT_MEMLOCK) is unlimited, so the kernel's own pinning limits"
        }
        return "the memlock limit (RLIMIT_MEMLOCK) is \(ByteCount(UInt64(limit.rlim_cur)).humanReadable)"
    }

    /// The completion status a verbs work completion maps to. `onReceive`: the completion is
    /// of a posted receive. A SEND larger than the receive is IBV_WC_LOC_LEN_ERR on hardware,
    /// but Soft-RoCE reports it otherwise: Linux 6.1's rxe_resp.c has copy_data refuse the
    /// length, which completes the receive as a malformed WQE (IBV_WC_LOC_QP_OP_ERR, seen on
    /// Debian's 6.1.0 kernel), and older rxe used IBV_WC_REM_INV_REQ_ERR. On a receive all
    /// three mean the message did not fit (on rxe the first also covers an unregistered buffer).
    static func status(_ status: ibv_wc_status, onReceive: Bool = false) -> Completion.Status {
        if onReceive && (status == IBV_WC_REM_INV_REQ_ERR || status == IBV_WC_LOC_QP_OP_ERR) { return .localLengthError }
        switch status {
        case IBV_WC_SUCCESS: return .success
        case IBV_WC_WR_FLUSH_ERR: return .flushed
        case IBV_WC_REM_ACCESS_ERR: return .remoteAccessError
        case IBV_WC_LOC_LEN_ERR: return .localLengthError
        case IBV_WC_RETRY_EXC_ERR, IBV_WC_RNR_RETRY_EXC_ERR: return .transportRetryExceeded
        default: return .otherError
        }
    }

    /// What an error completion says about the connection: the `failure` it records. Flushes
    /// have no cause of their own (the cause was recorded when the QP left RTS), so nil.
    static func failure(for status: ibv_wc_status, kind: Completion.Kind, id: UInt64, peer: TransportEndpoint) -> TransportError? {
        let request = "\(describe(kind)) id \(id)"
        switch status {
        case IBV_WC_SUCCESS, IBV_WC_WR_FLUSH_ERR:
            return nil
        case IBV_WC_REM_ACCESS_ERR:
            return .remoteAccessRefused(detail: "\(peer) refused \(request): unknown remote key or outside the exported "
                + "window (IBV_WC_REM_ACCESS_ERR); the connection is torn down")
        case IBV_WC_RETRY_EXC_ERR:
            return .peerDisconnected(peer, detail: "the peer stopped acknowledging \(request) "
                + "(IBV_WC_RETRY_EXC_ERR: transport retry count exceeded)")
        case IBV_WC_RNR_RETRY_EXC_ERR:
            return .peerDisconnected(peer, detail: "the peer had no receive posted for \(request) "
                + "(IBV_WC_RNR_RETRY_EXC_ERR)")
        case IBV_WC_LOC_LEN_ERR:
            return .protocolViolation(detail: "an incoming message from \(peer) was larger than the receive posted as \(request) "
                + "(IBV_WC_LOC_LEN_ERR)")
        case IBV_WC_REM_INV_REQ_ERR where kind == .receive, IBV_WC_LOC_QP_OP_ERR where kind == .receive:
            return .protocolViolation(detail: "an incoming message from \(peer) did not fit the receive posted as \(request) "
                + "(\(name(of: status)) on the receive: Soft-RoCE's report of a message longer than the receive, "
                + "or of a receive buffer it cannot use)")
        case IBV_WC_REM_OP_ERR where kind == .send:
            return .protocolViolation(detail: "\(peer) could not take \(request): larger than its posted receive, or its "
                + "receive was not usable (IBV_WC_REM_OP_ERR)")
        case IBV_WC_REM_INV_REQ_ERR:
            return .protocolViolation(detail: "\(peer) could not take \(request): larger than its posted receive "
                + "or not permitted (IBV_WC_REM_INV_REQ_ERR)")
        case IBV_WC_LOC_PROT_ERR:
            return .invalidWorkRequest(detail: "\(request) names memory that is not registered on this connection "
                + "or not with the needed access (IBV_WC_LOC_PROT_ERR)")
        case IBV_WC_REM_OP_ERR:
            return .connectionClosed(detail: "\(peer) could not complete \(request) (IBV_WC_REM_OP_ERR)")
        default:
            return .connectionClosed(detail: "\(request) failed: \(String(cString: ibv_wc_status_str(status))) "
                + "(work completion status \(status.rawValue))")
        }
    }

    /// The queue pair went into the error state with nothing on this side causing it: no
    /// error completion, no async event, no local disconnect. On RC the responder does that
    /// only when it refuses a request from the peer (IB spec class C/J responder errors:
    /// an RDMA WRITE with an unknown rkey or outside the MR, or an invalid request). Soft-RoCE
    /// in Linux 6.1 raises no IBV_EVENT_QP_ACCESS_ERR for it (rxe_resp.c), so this inference
    /// is how the target of a refused write learns it there.
    static func responderRefusal(peer: TransportEndpoint, device: String) -> TransportError {
        .invalidRemoteAccess(detail: "\(device) refused a request from \(peer) and put the queue pair into the error state: "
            + "a write outside a window this side exported, or with a key it never exported (no async event named it); "
            + "the connection is torn down")
    }

    static func name(of status: ibv_wc_status) -> String {
        switch status {
        case IBV_WC_REM_INV_REQ_ERR: return "IBV_WC_REM_INV_REQ_ERR"
        case IBV_WC_LOC_QP_OP_ERR: return "IBV_WC_LOC_QP_OP_ERR"
        default: return String(cString: ibv_wc_status_str(status))
        }
    }

    static func describe(_ kind: Completion.Kind) -> String {
        switch kind {
        case .write: return "WRITE"
        case .send: return "SEND"
        case .receive, .receivedWriteWithImmediate: return "receive"
        }
    }

    /// An asynchronous event about one QP or CQ (ibv_get_async_event(3)): the failure it
    /// means for the connection that owns it, or nil for events that are not failures.
    static func failure(for event: ibv_event_type, device: String, peer: TransportEndpoint) -> TransportError? {
        switch event {
        case IBV_EVENT_QP_ACCESS_ERR:
            return .invalidRemoteAccess(detail: "\(peer) accessed memory outside a window this side exported, or "
                + "with a key it never exported (IBV_EVENT_QP_ACCESS_ERR on \(device)); the connection is torn down")
        case IBV_EVENT_QP_REQ_ERR:
            return .protocolViolation(detail: "\(peer) sent a request the queue pair could not execute "
                + "(IBV_EVENT_QP_REQ_ERR on \(device))")
        case IBV_EVENT_QP_FATAL:
            return .connectionClosed(detail: "the queue pair hit a fatal error (IBV_EVENT_QP_FATAL on \(device))")
        case IBV_EVENT_CQ_ERR:
            return .connectionClosed(detail: "the completion queue overran (IBV_EVENT_CQ_ERR on \(device))")
        case IBV_EVENT_DEVICE_FATAL:
            return .deviceUnavailable(reason: "\(device) reported a fatal error (IBV_EVENT_DEVICE_FATAL)")
        default:
            return nil
        }
    }

    /// The IB CM reject reason for "no listener on that service id" (IB spec table 112,
    /// IB_CM_REJ_INVALID_SERVICE_ID), which is what RDMA_CM_EVENT_REJECTED carries when
    /// nobody listens at the port (rping prints it as "error 8").
    static let rejectReasonNoListener: Int32 = 8
    /// IB_CM_REJ_CONSUMER_DEFINED: the peer called rdma_reject.
    static let rejectReasonConsumer: Int32 = 28

    /// What a CM event during connection setup means for the caller of connect.
    static func connectFailure(_ event: CMEvent, endpoint: TransportEndpoint, step: String) -> TransportError {
        let statusText = event.status < 0
            ? SystemCallError(call: "", errno: -event.status).reason + " (\(SystemCallError.name(of: -event.status)))"
            : "status \(event.status)"
        switch event.type {
        case RDMA_CM_EVENT_ADDR_ERROR:
            return .unreachable(endpoint, reason: "address resolution failed: \(statusText); is the address on a "
                + "network an RDMA device serves (see `rdmig probe`)?")
        case RDMA_CM_EVENT_ROUTE_ERROR:
            return .unreachable(endpoint, reason: "route resolution failed: \(statusText)")
        case RDMA_CM_EVENT_UNREACHABLE:
            return .unreachable(endpoint, reason: "the peer's connection manager did not answer: \(statusText)")
        case RDMA_CM_EVENT_CONNECT_ERROR:
            return .unreachable(endpoint, reason: "the connection could not be established: \(statusText)")
        case RDMA_CM_EVENT_REJECTED:
            return rejection(status: event.status, privateData: event.privateData, endpoint: endpoint)
        case RDMA_CM_EVENT_DISCONNECTED:
            return .peerDisconnected(endpoint, detail: "the peer disconnected during \(step)")
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
            return .deviceUnavailable(reason: "the RDMA device was removed during \(step) (RDMA_CM_EVENT_DEVICE_REMOVAL)")
        default:
            return .protocolViolation(detail: "unexpected RDMA CM event \(event.name) during \(step)")
        }
    }

    /// REJECTED: the listener's own reason when it sent one, "refused" when nobody listens.
    static func rejection(status: Int32, privateData: [UInt8], endpoint: TransportEndpoint) -> TransportError {
        if let rejection = ConnectionRejection(decoding: privateData) {
            return .rejectedByPeer(endpoint, reason: rejection.message)
        }
        // iWARP reports a refused TCP connect as -ECONNREFUSED instead of a CM reason.
        if status == rejectReasonNoListener || status == -ECONNREFUSED || status == ECONNREFUSED {
            return .connectionRefused(endpoint)
        }
        if status == rejectReasonConsumer {
            return .rejectedByPeer(endpoint, reason: "the listener rejected the request without saying why (not an rdmig listener?)")
        }
        return .rejectedByPeer(endpoint, reason: "the peer's connection manager rejected the request (IB CM reject reason \(status))")
    }

    /// ibv_post_send / ibv_post_recv return an errno value (not -1): ENOMEM means the queue
    /// is full (ibv_post_send(3)).
    static func postFailure(_ result: Int32, queue: String, depth: Int, id: UInt64) -> TransportError {
        switch result {
        case ENOMEM:
            return .queueFull(queue: queue, depth: depth)
        case EINVAL:
            return .invalidWorkRequest(detail: "the device refused work request id \(id) on the \(queue) queue (EINVAL)")
        default:
            return .system(SystemCallError(call: queue == "send" ? "ibv_post_send" : "ibv_post_recv", errno: result, context: "work request id \(id)"))
        }
    }
}
