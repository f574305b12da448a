/// The transport API: RDMA semantics, whatever carries the bytes.
///
/// Shape (from verbs, so the `verbs` backend maps one to one and `tcp` emulates it):
/// - a `TransportBackend` listens on or connects to a `TransportEndpoint`, giving a
///   `TransportConnection` (an RC queue pair with its completion queue);
/// - memory is registered on a connection (`MemoryRegistration`: local key for posting) and
///   may be exported as a `RemoteWindow` (address, length, rkey) the peer can WRITE into;
/// - work requests are posted without blocking and finish as `Completion`s polled in
///   batches; only signalled requests produce a completion on success (selective
///   signalling), every request produces one on error (flush);
/// - WRITE_WITH_IMM consumes a posted receive on the peer and delivers the 32-bit immediate
///   with its completion, after all writes posted before it are visible (RC ordering).
///
/// Threading: like a verbs QP, a connection may be posted to from one thread and polled from
/// another, but each of posting and polling is single-threaded. The hot path (post, poll)
/// must not allocate, lock, or log.
public enum TransportBackendKind: String, Sendable, CaseIterable, CustomStringConvertible {
    case tcp
    case verbs

    public var description: String { rawValue }
}

/// Queue sizes and completion behaviour; defaults follow perftest (tx_depth 128, cq_mod 100,
/// rx_depth 512, CQ polled in batches of 16).
public struct TransportOptions: Sendable, Equatable {
    /// Maximum outstanding send-queue work requests (WRITE, WRITE_WITH_IMM, SEND).
    public var sendQueueDepth: Int = 128
    /// Maximum posted receives.
    public var receiveQueueDepth: Int = 512
    /// Callers signal one WR in this many (capped at `sendQueueDepth`); perftest's cq_mod.
    public var signalInterval: Int = 100
    /// Largest SEND accepted (control messages); writes are limited by windows only.
    public var maxSendBytes: Int = 64 * 1024
    /// Busy-poll the completion queue, or sleep on a completion channel / event.
    public var completionMode: CompletionMode = .event
    /// How long connect and accept may take before `TransportError.timedOut`.
    public var connectTimeout: Duration = .seconds(10)
    /// How long a peer that has not authenticated yet may take to complete its side of the
    /// handshake (the tcp preamble, then HELLO/AUTH) on a listener: it holds a connection
    /// slot only this long.
    public var handshakeTimeout: Duration = .seconds(5)
    /// Connections a listener keeps in their handshake at once; more are closed at once.
    public var maximumPendingHandshakes: Int = 16
    /// CPUs the backend's own threads (TCP I/O threads, verbs CQ pollers) are pinned to.
    public var threadCPUs: [Int32] = []
    /// The IP type-of-service / traffic-class byte (DSCP << 2 | ECN) of the connection's
    /// packets, nil for the system's default: on verbs rdma_cm's RDMA_OPTION_ID_TOS (on RoCE
    /// the GRH traffic class, which switches map to a priority — how the traffic reaches a
    /// lossless PFC class), on tcp IP_TOS / IPV6_TCLASS.
    public var trafficClass: UInt8?
    /// tcp backend: SO_SNDBUF and SO_RCVBUF of each connection in bytes (set before the
    /// handshake), or nil for sizes rdmig picks: the receive buffer at what the kernel's
    /// autotuning could reach (tcp_rmem's maximum), the send buffer from the measured round
    /// trip (see `TCPSocket.configureBuffers` and `sizeSendBufferForRoundTrip`). A size must
    /// hold a bandwidth-delay product: the old fixed 4 MiB held a 100 ms round trip to
    /// 50 MiB/s (issue 19). See `socketBufferRange`. The verbs backend has no socket buffers.
    public var socketBufferBytes: Int?

    /// `value` as a traffic class, nil outside 0-255 (then say `trafficClassRange`).
    public static func trafficClass(_ value: Int) -> UInt8? { UInt8(exactly: value) }
    /// What a traffic-class setting must be, for error messages.
    public static let trafficClassRange = "use 0 … 255 (DSCP × 4 + ECN, e.g. 104 for DSCP 26)"

    /// Smallest and largest `socketBufferBytes`: below 64 KiB one 64 KiB message cannot be in
    /// flight; Linux keeps a socket buffer below 2 GiB (it doubles the value asked for).
    public static let socketBufferBytesRange: ClosedRange<Int> = (64 << 10)...(1 << 30)
    /// What a socket buffer setting must be, for error messages.
    public static let socketBufferRange = "use 64KiB … 1GiB, or auto for sizes rdmig picks"

    public init() {}

    public enum CompletionMode: String, Sendable, Equatable, CaseIterable {
        case busyPoll = "busy-poll"
        case event
    }

    /// The effective signalling interval, as perftest caps cq_mod at tx_depth.
    public var effectiveSignalInterval: Int { max(1, min(signalInterval, sendQueueDepth)) }
}

/// Opens connections with one backend.
public protocol TransportBackend: Sendable {
    var kind: TransportBackendKind { get }

    /// Starts listening; port 0 picks a free port (see `TransportListener.localEndpoint`).
    func listen(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportListener

    /// Connects; fails with `.connectionRefused`, `.unreachable`, `.rejectedByPeer` or
    /// `.timedOut` (after `options.connectTimeout`).
    func connect(to endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportConnection
}

public protocol TransportListener: AnyObject, Sendable {
    /// The address actually bound (the chosen port when 0 was asked).
    var localEndpoint: TransportEndpoint { get }

    /// Waits for the next connection; `nil` waits forever.
    func accept(timeout: Duration?) throws(TransportError) -> any TransportConnection

    /// Stops listening; a blocked `accept` fails with `.connectionClosed`.
    func close()
}

/// One reliable, connected queue pair and its completion queue.
public protocol TransportConnection: AnyObject, Sendable {
    var backend: TransportBackendKind { get }
    var localEndpoint: TransportEndpoint { get }
    var peerEndpoint: TransportEndpoint { get }
    var options: TransportOptions { get }

    /// Registers memory for local use in work requests and, with `.remoteWrite`, for export.
    /// The memory must stay valid until `deregister` (or the connection closes).
    func register(_ memory: UnsafeMutableRawBufferPointer, access: MemoryAccess) throws(TransportError) -> MemoryRegistration

    /// Withdraws a registration: its windows stop accepting writes at once.
    func deregister(_ registration: MemoryRegistration) throws(TransportError)

    /// One-sided write of `local` into the peer's memory at `remote`. With `immediate`, the
    /// peer consumes one posted receive and gets `.receivedWriteWithImmediate` with the value,
    /// after this and all earlier writes are visible.
    func postWrite(_ local: LocalSlice, to remote: RemoteSlice, id: UInt64, signaled: Bool, immediate: UInt32?) throws(TransportError)

    /// Two-sided send: the peer consumes one posted receive, which must be large enough.
    func postSend(_ local: LocalSlice, id: UInt64, signaled: Bool) throws(TransportError)

    /// Offers `local` for one incoming SEND or WRITE_WITH_IMM.
    func postReceive(_ local: LocalSlice, id: UInt64) throws(TransportError)

    /// Moves up to `buffer.count` finished completions into `buffer`; never blocks.
    func pollCompletions(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int

    /// Like `pollCompletions`, but waits up to `timeout` (nil: forever) for at least one.
    /// Returns 0 on timeout. In `.busyPoll` mode it spins; in `.event` mode it sleeps.
    func waitForCompletions(into buffer: UnsafeMutableBufferPointer<Completion>, timeout: Duration?) -> Int

    /// Why the connection stopped working, once it has (peer gone, refused access, ...).
    var failure: TransportError? { get }

    /// Orderly close: outstanding work completes with `.flushed`, the peer sees
    /// `.peerDisconnected`. Safe to call more than once.
    func close()
}

/// The per-direction keys a connection encrypts its frames with (from the authenticated
/// handshake: `SessionKeys`).
public struct TransportEncryptionKeys: Sendable {
    public var sendKey: [UInt8]
    public var receiveKey: [UInt8]

    public init(sendKey: [UInt8], receiveKey: [UInt8]) {
        self.sendKey = sendKey
        self.receiveKey = receiveKey
    }
}

extension TransportConnection {
    /// Encrypts and authenticates every WRITE and SEND from now on (AES-256-GCM under
    /// `keys`); both sides call it at the same point of their protocol, before posting
    /// anything more. Returns false where the backend has no such thing (verbs: there the
    /// fabric is the boundary — partitions, VLANs, IPsec/MACsec offload).
    public func startEncryption(_ keys: TransportEncryptionKeys) throws(TransportError) -> Bool {
        if let tcp = self as? TCPConnection { return try tcp.startFrameEncryption(keys) }
        return false
    }

    /// Posts a write with no immediate.
    public func postWrite(_ local: LocalSlice, to remote: RemoteSlice, id: UInt64, signaled: Bool) throws(TransportError) {
        try postWrite(local, to: remote, id: id, signaled: signaled, immediate: nil)
    }
}
