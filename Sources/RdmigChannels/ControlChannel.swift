import RdmigTransport
import Synchronization

/// Typed, versioned, length-checked control messages over SEND/RECV.
///
/// Each message is one frame (`ControlFrameHeader` + payload) encoded straight into a
/// registered send slot and decoded straight out of the router's receive buffer.
///
/// **Credits.** A SEND consumes a posted receive on the peer, and this side's receives are
/// shared with the streams' writes, so the receiving half grants the sender a limit: "you may
/// send messages up to number L". It grants L = consumed + `receiveCredits` when the channel
/// opens and again whenever half of the credits have been used, as a signal (the limit rides
/// in the immediate of an 8-byte WRITE_WITH_IMM, see `CompletionRouter`). A sender that has
/// used its limit waits. Grants in flight are bounded too: one per half-window consumed.
///
/// Threading: the sending half and the receiving half each serialize their callers with a
/// lock (this is the control path); one thread may send while another receives.
public final class ControlChannel: @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Messages the peer may have in flight to this side (receives reserved for them).
        public var receiveCredits: Int = 16
        /// Registered send slots: messages this side may have in flight.
        public var sendSlots: Int = 8
        /// Default timeout of `send` when the caller gives none.
        public var sendTimeout: Duration = .seconds(30)
        /// How long `close` waits for this side's sent messages (and its close signal) to
        /// complete before it gives up on them.
        public var closeTimeout: Duration = .seconds(5)

        public init() {}
    }

    public let router: CompletionRouter
    public let configuration: Configuration
    /// Largest frame (header + payload) this side sends: the peer's receive buffer size.
    public let frameSize: Int
    /// Largest payload a message may have.
    public var maximumPayloadSize: Int {
        frameSize - ControlFrameHeader.size - (authenticator == nil ? 0 : ControlFrameAuthenticator.tagSize)
    }
    /// The keyed MAC of every frame both ways (nil only where no handshake ran: channel tests).
    public let authenticator: ControlFrameAuthenticator?

    private let sendInbox: CompletionInbox
    private let receiveInbox: CompletionInbox
    private let sendBuffer: RegisteredBuffer
    private let sender: Mutex<SendState>
    private let receiver: Mutex<ReceiveState>

    private struct SendState {
        var account: SendQueueAccount
        var sent: UInt64 = 0
        var limit: UInt64 = 0
        var peerClosed = false
        var closed = false
    }

    private struct ReceiveState {
        var account: SendQueueAccount
        var consumed: UInt64 = 0
        var grantedAt: UInt64 = 0
        var closed = false
    }

    static let grantSlots = 4

    /// Opens the control channel on `router`; the peer must open its control channel too
    /// (the first credit grant comes from there).
    public init(router: CompletionRouter, configuration: Configuration = Configuration(),
                authenticator: ControlFrameAuthenticator? = nil) throws(ChannelError) {
        guard configuration.receiveCredits >= 1, configuration.sendSlots >= 1 else {
            throw .invalidArgument(detail: "a control channel needs at least one credit and one send slot")
        }
        self.router = router
        self.configuration = configuration
        self.authenticator = authenticator
        frameSize = min(router.peerReceiveBufferSize, router.connection.options.maxSendBytes)
        sendBuffer = try RegisteredBuffer(connection: router.connection, byteCount: configuration.sendSlots * frameSize,
                                          access: [.localWrite], purpose: "control send slots")
        // The peer's grants in flight: its opening grant, at most three more while it consumes
        // one window (one per half window, rounded down), and its close.
        sendInbox = try router.register(.control, sendSlots: configuration.sendSlots, receives: 5)
        // Frames up to the credits this side grants.
        receiveInbox = try router.register(.controlReceiver, sendSlots: Self.grantSlots, receives: configuration.receiveCredits)
        sender = Mutex(SendState(account: SendQueueAccount(capacity: configuration.sendSlots, signalInterval: 1)))
        receiver = Mutex(ReceiveState(account: SendQueueAccount(capacity: Self.grantSlots, signalInterval: 1)))
        try receiver.withLock { (state) throws(ChannelError) in
            try grant(&state, force: true)
        }
    }

    // MARK: - Sending

    /// Sends `message`, waiting up to `timeout` (default: `configuration.sendTimeout`) for a
    /// credit and a free send slot. Returns once the frame is posted; RC delivers frames in order.
    public func send<M: ControlMessage>(_ message: M, timeout: Duration? = nil) throws(ChannelError) {
        let timeout = timeout ?? configuration.sendTimeout
        let deadline = ContinuousClock.now + timeout
        try sender.withLock { (state) throws(ChannelError) in
            while true {
                if state.closed { throw .closed(channel: "the control channel") }
                if state.peerClosed { throw .peerClosed(channel: "its control channel") }
                while let completion = sendInbox.pop() { try handleSendSide(completion, &state) }
                if state.sent < state.limit, state.account.hasRoom { break }
                let completion = try router.wait(
                    on: sendInbox, until: deadline, timeout: timeout,
                    operation: state.sent >= state.limit
                        ? "sending \(message.wireName): waiting for the peer to grant control credit (is it receiving?)"
                        : "sending \(message.wireName): waiting for earlier control messages to complete")
                try handleSendSide(completion, &state)
            }
            // The slot is free: its previous message's SEND completed (`hasRoom` above).
            let slot = Int(state.account.posted % UInt64(configuration.sendSlots))
            let length = try ControlFrame.encode(message, into: sendBuffer.bytes(offset: slot * frameSize, length: frameSize),
                                                 authenticator: authenticator, sequence: state.sent)
            let (sequence, _) = state.account.claim(forceSignal: true)
            try router.post { connection throws(TransportError) in
                try connection.postSend(sendBuffer.registration.slice(offset: slot * frameSize, length: length),
                                        id: WorkRequestID.make(.control, sequence), signaled: true)
            }
            state.sent += 1
        }
    }

    private func handleSendSide(_ completion: Completion, _ state: inout SendState) throws(ChannelError) {
        switch completion.kind {
        case .send:
            state.account.complete(sequence: WorkRequestID.sequence(of: completion.id))
        case .receivedWriteWithImmediate:
            let immediate = completion.immediate ?? 0
            if ImmediateValue.hasFlag(immediate) {
                state.peerClosed = true
            } else {
                let limit = ImmediateValue.extend(ImmediateValue.counter(of: immediate), near: state.limit)
                if limit > state.limit { state.limit = limit }
            }
        default:
            throw .protocolViolation(detail: "unexpected \(completion.kind) completion on the control channel's sending half")
        }
    }

    // MARK: - Receiving

    /// The next message, waiting up to `timeout` (nil: forever). A frame that fails to decode
    /// is an error naming what is wrong; the channel stays usable.
    public func receive<M: ControlMessage>(_ type: M.Type, timeout: Duration?) throws(ChannelError) -> M {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        return try receiver.withLock { (state) throws(ChannelError) -> M in
            if state.closed { throw .closed(channel: "the control channel") }
            while true {
                let completion = try router.wait(on: receiveInbox, until: deadline, timeout: timeout,
                                                 operation: "waiting for a control message")
                switch completion.kind {
                case .receive:
                    let slot = Int(WorkRequestID.sequence(of: completion.id))
                    let frame = router.receivedFrame(slot: slot, length: completion.byteCount)
                    let sequence = state.consumed
                    let decoded = Result { () throws(ChannelError) -> M in
                        try ControlFrame.decode(frame, as: M.self, authenticator: authenticator, sequence: sequence)
                    }
                    router.repostReceive(slot: slot)
                    state.consumed += 1
                    // Granting can fail only with the connection; the message already arrived.
                    try? grant(&state, force: false)
                    return try decoded.get()
                case .write:
                    state.account.complete(sequence: WorkRequestID.sequence(of: completion.id))
                    try? grant(&state, force: false)
                default:
                    throw .protocolViolation(detail: "unexpected \(completion.kind) completion on the control channel's receiving half")
                }
            }
        }
    }

    /// The next migration message.
    public func receive(timeout: Duration?) throws(ChannelError) -> MigrationMessage {
        try receive(MigrationMessage.self, timeout: timeout)
    }

    private func grant(_ state: inout ReceiveState, force: Bool) throws(ChannelError) {
        let threshold = UInt64(max(1, configuration.receiveCredits / 2))
        guard force || state.consumed - state.grantedAt >= threshold else { return }
        // A full grant account defers the grant to the next completion or message; it frees
        // up as the grants' own completions come back through this inbox.
        guard state.account.hasRoom else { return }
        let limit = state.consumed + UInt64(configuration.receiveCredits)
        try router.postSignal(account: &state.account, from: .controlReceiver, to: .control,
                              counter: limit, flag: false)
        state.grantedAt = state.consumed
    }

    // MARK: - Closing

    /// Closes both halves and tells the peer, whose sends then fail with `.peerClosed`.
    ///
    /// Orderly: it first waits (up to `closeTimeout`, less if the connection fails) until every
    /// message this side sent has completed, then until its close signal has. Tearing down a
    /// connection drops work requests still queued: a queue pair moved to the error state
    /// (rdma_disconnect) flushes its send queue (IBTA 10.7.3.1), and the TCP backend, emulating
    /// that, stops at its CLOSE frame. A message posted just before the close, such as the
    /// destination's last word RESUMED, was lost that way under load. An RC SEND completes
    /// only once the peer acknowledged it, so after these waits the peer has the messages.
    /// Returns whether every message this side sent was acknowledged by the peer (false: the
    /// connection failed or the close timed out first, so the last ones may not have arrived).
    @discardableResult
    public func close() -> Bool {
        let deadline = ContinuousClock.now + configuration.closeTimeout
        let delivered = sender.withLock { state -> Bool in
            state.closed = true
            var allAcknowledged = true
            while !state.account.isIdle {
                do {
                    let completion = try sendInbox.pop() ?? router.wait(
                        on: sendInbox, until: deadline, timeout: configuration.closeTimeout,
                        operation: "closing the control channel: waiting for sent messages to complete")
                    if completion.status != .success { allAcknowledged = false }
                    try handleSendSide(completion, &state)
                } catch {
                    return false
                }
            }
            return allAcknowledged
        }
        receiver.withLock { state in
            guard !state.closed else { return }
            state.closed = true
            guard state.account.hasRoom,
                  (try? router.postSignal(account: &state.account, from: .controlReceiver, to: .control,
                                          counter: 0, flag: true)) != nil else { return }
            while !state.account.isIdle {
                guard let completion = receiveInbox.pop() ?? (try? router.wait(
                    on: receiveInbox, until: deadline, timeout: configuration.closeTimeout,
                    operation: "closing the control channel: waiting for the close signal to complete")) else { break }
                switch completion.kind {
                case .write:
                    state.account.complete(sequence: WorkRequestID.sequence(of: completion.id))
                case .receive:
                    // A message arriving while closing is not read; its buffer goes back.
                    router.repostReceive(slot: Int(WorkRequestID.sequence(of: completion.id)))
                default:
                    break
                }
            }
        }
        router.unregister(.controlReceiver)
        router.unregister(.control)
        return delivered
    }
}
