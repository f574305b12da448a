#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport
import Synchronization

/// Shares one connection among its channels: one completion queue, one receive queue, one
/// send queue.
///
/// **Who polls.** One dedicated poller thread (a `SystemThread`) polls the connection and
/// fans completions out to per-channel inboxes (lock-free single-producer single-consumer
/// rings with a doorbell). The transport allows one polling thread; with channels used from
/// different threads (the page channel on the migration thread, a stream on a relay thread,
/// control messages on either), letting each channel poll in turn would need a lock around
/// polling and a way to hand other channels' completions over anyway. The poller costs a
/// thread hop per completion a channel waits for; the page channel waits for one completion
/// per signal interval, the control channel for one per message, so the hop is noise next
/// to a write of a megabyte or a round trip.
///
/// **Routing.** Send-queue completions carry the channel in the top byte of the work-request
/// id (`WorkRequestID`). Receive completions carry the receive buffer's slot; an incoming
/// SEND is always a control frame (the first one the peer's setup frame), an incoming
/// WRITE_WITH_IMM carries the destination channel in the top byte of its immediate
/// (`ImmediateValue`).
///
/// **Receive queue.** The receive queue is FIFO and any posted receive may be consumed by a
/// SEND or a WRITE_WITH_IMM, so the router owns all receives, each big enough for a control
/// frame. Receives consumed by WRITE_WITH_IMM carry no data and are re-posted by the poller at
/// once; receives holding a control frame are re-posted when the control channel has decoded
/// it. Each channel reserves the receives the peer may consume for it at most (control: its
/// credits; a stream: its slots), and the sum must fit the pool, so a peer that follows the
/// credit rules never finds the queue empty.
///
/// **Send queue.** Each channel reserves send-queue slots (`SendQueueAccount`) and never has
/// more outstanding. Posting is serialized by one lock, because the transport allows one
/// posting thread at a time and channels post from their own threads; verbs providers take
/// a per-queue spinlock in `ibv_post_send` anyway (rdma-core providers/mlx5/qp.c), so this
/// adds one uncontended lock per work request, each of which moves up to megabytes.
///
/// **Signals.** Credit grants and end-of-stream markers are 8-byte WRITE_WITH_IMMs into the
/// peer's signal area (one word per channel, exported in the setup frame); only the
/// immediate matters. They consume a receive on the peer, which the poller re-posts at once.
///
/// Lifetime: create on both ends right after connect/accept (the constructor exchanges the
/// setup frames and blocks until the peer's arrives), then create channels; `close()` stops
/// the poller and must be called (the poller thread keeps the router alive until then).
public final class CompletionRouter: @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Receives kept posted; every channel's reservation comes out of these.
        public var receiveCount: Int = 64
        /// Size of each receive buffer: the largest control frame the peer may send.
        public var receiveBufferSize: Int = 16 * 1024
        /// Completions taken per poll (perftest polls in batches of 16).
        public var pollBatch: Int = 16
        /// How long the poller sleeps in one wait before it checks for `close()`.
        public var pollInterval: Duration = .milliseconds(20)
        /// How long the constructor waits for the peer's setup frame.
        public var setupTimeout: Duration = .seconds(10)
        /// CPUs for the poller thread (empty: the connection's `threadCPUs`).
        public var pollerCPUs: [Int32] = []

        public init() {}
    }

    public let connection: any TransportConnection
    public let configuration: Configuration
    /// Largest frame the peer accepts (its receive buffer size, from its setup frame).
    public private(set) var peerReceiveBufferSize: Int = 0
    /// The peer's receive count, from its setup frame.
    public private(set) var peerReceiveCount: Int = 0

    static let signalAreaWindowSize = 256 * 8
    static let signalSourceOffset = signalAreaWindowSize
    static let setupFrameOffset = signalAreaWindowSize + 64
    static let signalAreaSize = 4096

    /// Authenticates the setup frames (the control channel authenticates its own).
    private let authenticator: ControlFrameAuthenticator?
    /// The setup frame's sequence number for its MAC, apart from every control frame's.
    static let setupFrameSequence = UInt64.max

    private let receivePool: RegisteredBuffer
    private let signalArea: RegisteredBuffer
    private var peerSignalWindow = RemoteWindow(address: 0, length: 0, remoteKey: 0)

    private let owners: [OwnerSlot]
    private let registry = Mutex(Registry())
    private let postLock = Mutex(())
    private let failed = Atomic<Bool>(false)
    private let failureState = Mutex<ChannelError?>(nil)
    private let stopping = Atomic<Bool>(false)
    private var poller: SystemThread?
    private var setupInbox: CompletionInbox!

    private final class OwnerSlot: @unchecked Sendable {
        static let unregistered: UInt8 = 0
        static let registered: UInt8 = 1
        static let closed: UInt8 = 2
        let state = Atomic<UInt8>(OwnerSlot.unregistered)
        /// Written under the registry lock before `state` becomes `registered` (release);
        /// read by the poller after it loads `registered` (acquire).
        var inbox: CompletionInbox?
    }

    private struct Registry {
        var sendSlotsReserved = 0
        var receivesReserved = 0
        /// Completions for channels the peer uses before this side registered them (the
        /// peer's first control credit can arrive before the local control channel exists).
        var parked: [(channel: UInt8, completion: Completion)] = []
    }

    static let parkedLimit = 256

    /// Registers the router's buffers, posts every receive, starts the poller and exchanges
    /// setup frames with the peer's router (which must be created at the same time).
    ///
    /// Call it only after the peer authenticated: it registers memory, posts receives into it and
    /// exports a window. If it fails it closes the connection before its buffers are freed, so
    /// no receive posted here can outlive the memory it points to.
    public init(connection: any TransportConnection, configuration: Configuration = Configuration(),
                authenticator: ControlFrameAuthenticator? = nil) throws(ChannelError) {
        guard configuration.receiveCount >= 2, configuration.receiveCount <= connection.options.receiveQueueDepth else {
            throw .invalidArgument(detail: "receive count \(configuration.receiveCount) must be between 2 and the connection's receive queue depth \(connection.options.receiveQueueDepth)")
        }
        guard configuration.receiveBufferSize >= 256, configuration.receiveBufferSize <= connection.options.maxSendBytes else {
            throw .invalidArgument(detail: "receive buffer size \(configuration.receiveBufferSize) must be between 256 and the connection's largest SEND (\(connection.options.maxSendBytes) bytes)")
        }
        self.connection = connection
        self.configuration = configuration
        self.authenticator = authenticator
        receivePool = try RegisteredBuffer(
            connection: connection, byteCount: configuration.receiveCount * configuration.receiveBufferSize,
            access: [.localWrite], purpose: "control receive buffers")
        signalArea = try RegisteredBuffer(
            connection: connection, byteCount: Self.signalAreaSize, access: [.localWrite, .remoteWrite],
            purpose: "channel signal area")
        owners = (0..<256).map { _ in OwnerSlot() }

        do throws(ChannelError) {
            setupInbox = try register(.router, sendSlots: 1, receives: 1)
            for slot in 0..<configuration.receiveCount {
                try post { connection throws(TransportError) in
                    try connection.postReceive(receiveSlice(slot), id: WorkRequestID.make(.router, UInt64(slot)))
                }
            }
            let cpus = configuration.pollerCPUs.isEmpty ? connection.options.threadCPUs : configuration.pollerCPUs
            do {
                poller = try SystemThread(name: "rdmig-cq-poll", cpus: cpus) { [self] in pollLoop() }
            } catch {
                throw ChannelError.system(error)
            }
            try exchangeSetup()
        } catch {
            close()
            connection.close()
            throw error
        }
    }

    /// Why the connection stopped working, once it has.
    public var failure: ChannelError? {
        guard failed.load(ordering: .acquiring) else { return nil }
        return failureState.withLock { $0 }
    }

    /// Stops the poller and wakes every waiting channel with `.closed`. The connection itself
    /// stays open (it belongs to the caller). Safe to call more than once.
    public func close() {
        fail(.closed(channel: "the connection's channels"))
        stopping.store(true, ordering: .releasing)
        poller?.join()
    }

    // MARK: - Setup

    private func exchangeSetup() throws(ChannelError) {
        let setup = ChannelSetup(
            signalWindow: signalArea.registration.window(offset: 0, length: Self.signalAreaWindowSize),
            receiveCount: UInt32(configuration.receiveCount),
            receiveBufferSize: UInt32(configuration.receiveBufferSize))
        let frameArea = signalArea.bytes(offset: Self.setupFrameOffset, length: Self.signalAreaSize - Self.setupFrameOffset)
        let length = try ControlFrame.encode(setup, into: frameArea, authenticator: authenticator, sequence: Self.setupFrameSequence)
        try post { connection throws(TransportError) in
            try connection.postSend(signalArea.registration.slice(offset: Self.setupFrameOffset, length: length),
                                    id: WorkRequestID.make(.router, 0), signaled: true)
        }
        let deadline = ContinuousClock.now + configuration.setupTimeout
        var sent = false
        var peerSetup: ChannelSetup?
        while !sent || peerSetup == nil {
            let completion = try wait(on: setupInbox, until: deadline, timeout: configuration.setupTimeout,
                                      operation: "waiting for the peer's channel setup")
            switch completion.kind {
            case .send:
                sent = true
            case .receive:
                let slot = Int(WorkRequestID.sequence(of: completion.id))
                let frame = receivedFrame(slot: slot, length: completion.byteCount)
                let decoded = Result { () throws(ChannelError) -> ChannelSetup in
                    try ControlFrame.decode(frame, as: ChannelSetup.self, authenticator: authenticator, sequence: Self.setupFrameSequence)
                }
                repostReceive(slot: slot)
                peerSetup = try decoded.get()
            default:
                throw .protocolViolation(detail: "unexpected \(completion.kind) completion during channel setup")
            }
        }
        peerSignalWindow = peerSetup!.signalWindow
        peerReceiveBufferSize = Int(peerSetup!.receiveBufferSize)
        peerReceiveCount = Int(peerSetup!.receiveCount)
        guard peerSignalWindow.length >= UInt64(Self.signalAreaWindowSize) else {
            throw .protocolViolation(detail: "the peer's signal window holds \(peerSignalWindow.length) bytes, \(Self.signalAreaWindowSize) are needed")
        }
    }

    // MARK: - Channel registration

    /// Reserves `sendSlots` send-queue slots and `receives` receives for `channel` and gives it
    /// its inbox (with any completions parked for it).
    func register(_ channel: ChannelID, sendSlots: Int, receives: Int) throws(ChannelError) -> CompletionInbox {
        let slot = owners[Int(channel.rawValue)]
        let inbox = try CompletionInbox(channel: channel, minimumCapacity: sendSlots + receives + 2)
        let sendQueueDepth = connection.options.sendQueueDepth
        let receiveCount = configuration.receiveCount
        let result: Result<Void, ChannelError> = registry.withLock { registry in
            guard slot.state.load(ordering: .relaxed) == OwnerSlot.unregistered else {
                return .failure(.invalidArgument(detail: "\(channel) is already open on this connection"))
            }
            guard registry.sendSlotsReserved + sendSlots <= sendQueueDepth else {
                return .failure(.resourcesExhausted(detail: "\(channel) needs \(sendSlots) send-queue slots but only \(sendQueueDepth - registry.sendSlotsReserved) of \(sendQueueDepth) are free: raise the send queue depth or give other channels fewer"))
            }
            guard registry.receivesReserved + receives <= receiveCount else {
                return .failure(.resourcesExhausted(detail: "\(channel) needs \(receives) receives but only \(receiveCount - registry.receivesReserved) of \(receiveCount) are free: raise CompletionRouter.Configuration.receiveCount or use fewer slots or credits"))
            }
            registry.sendSlotsReserved += sendSlots
            registry.receivesReserved += receives
            var kept: [(channel: UInt8, completion: Completion)] = []
            for entry in registry.parked {
                if entry.channel == channel.rawValue {
                    _ = inbox.push(entry.completion)
                } else {
                    kept.append(entry)
                }
            }
            registry.parked = kept
            slot.inbox = inbox
            slot.state.store(OwnerSlot.registered, ordering: .releasing)
            return .success(())
        }
        try result.get()
        return inbox
    }

    /// Stops routing to `channel`: later completions for it are dropped (received control
    /// frames are re-posted). Its reservations stay taken, as its requests may still be queued.
    func unregister(_ channel: ChannelID) {
        registry.withLock { _ in
            owners[Int(channel.rawValue)].state.store(OwnerSlot.closed, ordering: .releasing)
        }
    }

    // MARK: - Posting

    /// Runs `body` with exclusive posting rights on the connection.
    @inline(__always)
    func post<Value>(_ body: (any TransportConnection) throws(TransportError) -> Value) throws(ChannelError) -> Value {
        let outcome: Result<Value, TransportError> = postLock.withLock { _ in
            do throws(TransportError) { return .success(try body(connection)) } catch { return .failure(error) }
        }
        switch outcome {
        case .success(let value): return value
        case .failure(let error): throw failure ?? .transport(error)
        }
    }

    /// Posts a signal to the peer's `target` channel: an 8-byte WRITE_WITH_IMM into its word of
    /// the peer's signal area, with the channel, `counter` and `flag` in the immediate.
    /// The caller's account must have room.
    func postSignal(account: inout SendQueueAccount, from owner: ChannelID, to target: ChannelID,
                    counter: UInt64, flag: Bool, forceSignal: Bool = false) throws(ChannelError) {
        let (sequence, signaled) = account.claim(forceSignal: forceSignal)
        let local = signalArea.registration.slice(offset: Self.signalSourceOffset, length: 8)
        let remote = peerSignalWindow.slice(offset: UInt64(target.rawValue) * 8, length: 8)
        let immediate = ImmediateValue.make(target, counter: counter, flag: flag)
        try post { connection throws(TransportError) in
            try connection.postWrite(local, to: remote, id: WorkRequestID.make(owner, sequence),
                                     signaled: signaled, immediate: immediate)
        }
    }

    // MARK: - Receive buffers

    private func receiveSlice(_ slot: Int) -> LocalSlice {
        receivePool.registration.slice(offset: slot * configuration.receiveBufferSize, length: configuration.receiveBufferSize)
    }

    /// The bytes a SEND delivered into receive buffer `slot`.
    func receivedFrame(slot: Int, length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(receivePool.bytes(offset: slot * configuration.receiveBufferSize,
                                                 length: min(max(0, length), configuration.receiveBufferSize)))
    }

    /// Hands receive buffer `slot` back to the receive queue. A failed connection cannot take
    /// it; that failure is already recorded and reported by the next wait.
    func repostReceive(slot: Int) {
        guard slot >= 0, slot < configuration.receiveCount else { return }
        do {
            try post { connection throws(TransportError) in
                try connection.postReceive(receiveSlice(slot), id: WorkRequestID.make(.router, UInt64(slot)))
            }
        } catch {
            fail(error)
        }
    }

    // MARK: - Waiting

    /// The next completion in `inbox`, waiting until `deadline` (nil: forever). Completions
    /// already routed are handed out even after the connection failed, so a reader still gets
    /// what arrived before the peer went away; only then is the failure thrown.
    func wait(on inbox: CompletionInbox, until deadline: ContinuousClock.Instant?, timeout: Duration?,
              operation: @autoclosure () -> String) throws(ChannelError) -> Completion {
        while true {
            if let completion = inbox.pop() { return completion }
            if failed.load(ordering: .acquiring) {
                if let completion = inbox.pop() { return completion }
                throw failure ?? .closed(channel: inbox.channel.description)
            }
            var milliseconds: Int32 = 100
            if let deadline {
                let now = ContinuousClock.now
                if now >= deadline {
                    throw .timedOut(operation: operation(), after: timeout ?? .zero)
                }
                let left = (deadline - now).milliseconds
                milliseconds = Int32(max(1, min(100, left.rounded(.up))))
            }
            inbox.doorbell.sleep(timeoutMilliseconds: milliseconds) {
                inbox.hasWork || failed.load(ordering: .acquiring)
            }
        }
    }

    // MARK: - Failure

    func fail(_ error: ChannelError) {
        let first: Bool = failureState.withLock { state in
            guard state == nil else { return false }
            state = error
            return true
        }
        guard first else { return }
        failed.store(true, ordering: .releasing)
        registry.withLock { _ in
            for slot in owners where slot.state.load(ordering: .acquiring) == OwnerSlot.registered {
                slot.inbox?.doorbell.forceRing()
            }
        }
    }

    private func failureFor(_ completion: Completion) -> ChannelError {
        if let failure = connection.failure { return .transport(failure) }
        let owner: String
        switch completion.kind {
        case .write, .send: owner = WorkRequestID.channel(of: completion.id).description
        case .receive, .receivedWriteWithImmediate: owner = "receive queue"
        }
        let detail = "a \(completion.kind) work request of the \(owner) completed with status \(completion.status)"
        switch completion.status {
        case .remoteAccessError: return .transport(.remoteAccessRefused(detail: detail))
        case .flushed: return .transport(.connectionClosed(detail: detail))
        default: return .transport(.protocolViolation(detail: detail))
        }
    }

    // MARK: - The poller

    private func pollLoop() {
        let batch = max(1, configuration.pollBatch)
        let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: batch)
        buffer.initialize(repeating: .empty)
        defer { buffer.deallocate() }
        var setupFrameSeen = false
        while !stopping.load(ordering: .acquiring) {
            let count = connection.waitForCompletions(into: buffer, timeout: configuration.pollInterval)
            if count == 0 {
                if let failure = connection.failure {
                    fail(.transport(failure))
                }
                if failed.load(ordering: .acquiring) {
                    // A failed connection may return at once; do not spin on it.
                    usleep(UInt32(max(1, configuration.pollInterval.milliseconds)) * 1000)
                }
                continue
            }
            for index in 0..<count {
                route(buffer[index], setupFrameSeen: &setupFrameSeen)
            }
        }
    }

    @inline(__always)
    private func route(_ completion: Completion, setupFrameSeen: inout Bool) {
        guard completion.status == .success else {
            if !stopping.load(ordering: .relaxed) { fail(failureFor(completion)) }
            return
        }
        switch completion.kind {
        case .write, .send:
            deliver(completion, to: WorkRequestID.channel(of: completion.id))
        case .receive:
            // The peer's router puts its setup frame on the connection before anything else.
            let owner: ChannelID = setupFrameSeen ? .controlReceiver : .router
            setupFrameSeen = true
            deliver(completion, to: owner)
        case .receivedWriteWithImmediate:
            repostReceive(slot: Int(WorkRequestID.sequence(of: completion.id)))
            guard let immediate = completion.immediate else {
                fail(.protocolViolation(detail: "a write with immediate arrived without its immediate"))
                return
            }
            deliver(completion, to: ImmediateValue.channel(of: immediate))
        }
    }

    @inline(__always)
    private func deliver(_ completion: Completion, to channel: ChannelID) {
        let slot = owners[Int(channel.rawValue)]
        if slot.state.load(ordering: .acquiring) == OwnerSlot.registered {
            if !slot.inbox!.push(completion) { overflow(channel) }
            return
        }
        // Rare: the channel is not open (yet) or closed.
        var action = 0
        registry.withLock { registry in
            switch slot.state.load(ordering: .acquiring) {
            case OwnerSlot.registered:
                action = slot.inbox!.push(completion) ? 0 : 1
            case OwnerSlot.closed:
                action = 2
            default:
                if registry.parked.count >= Self.parkedLimit {
                    action = 3
                } else {
                    registry.parked.append((channel.rawValue, completion))
                }
            }
        }
        switch action {
        case 1:
            overflow(channel)
        case 2:
            if completion.kind == .receive { repostReceive(slot: Int(WorkRequestID.sequence(of: completion.id))) }
        case 3:
            fail(.protocolViolation(detail: "the peer sent more than \(Self.parkedLimit) completions' worth to channels this side never opened (last: \(channel))"))
        default:
            break
        }
    }

    private func overflow(_ channel: ChannelID) {
        fail(.protocolViolation(detail: "\(channel) received more than it reserved: the peer overran its credits"))
    }
}
