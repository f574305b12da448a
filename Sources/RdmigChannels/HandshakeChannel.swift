import RdmigSystem
import RdmigTransport

/// All a peer gets before it has authenticated: one small buffer registered for local access
/// only (no window, nothing the peer can write into directly), two receives posted into it
/// (the peer's HELLO and its AUTH — or the ABORT that refuses), and frames exchanged by SEND,
/// polled on the caller's thread (no poller thread).
///
/// The HELLO/AUTH exchange runs here; the `CompletionRouter` with its receive pool and signal
/// window, and everything after, is created only once it succeeded. Both receives are posted
/// before this side sends anything, so a peer never waits for one (not even a destination
/// that refuses right after its HELLO), and after a successful exchange none is left posted.
/// On failure the connection is closed before the buffer is freed: a posted receive can
/// never outlive the memory it points to.
public final class HandshakeChannel {
    /// Largest frame either side sends before authentication (HELLO, AUTH, ABORT).
    public static let frameCapacity = 1024
    /// Frames each side receives in a successful handshake: HELLO and AUTH.
    public static let receiveSlots = 2

    public let connection: any TransportConnection
    private let memory: UnsafeMutableRawBufferPointer
    private var registration: MemoryRegistration?
    /// Receives posted and not yet completed, and receives handed out so far.
    private var receivesPosted = 0
    private var received = 0
    private var completions: [Completion]
    /// A frame that arrived while this side waited for its own send to complete (the peer
    /// may answer — or refuse — before the acknowledgement of what provoked it comes back).
    private var arrived: Completion?
    /// The whole exchange must finish by then: an unauthenticated peer holds resources only
    /// this long.
    public let deadline: ContinuousClock.Instant
    private let timeout: Duration

    private static let sendID: UInt64 = 1
    private static let receiveID: UInt64 = 2

    public init(connection: any TransportConnection, timeout: Duration) throws(ChannelError) {
        self.connection = connection
        self.timeout = timeout
        deadline = ContinuousClock.now + timeout
        memory = UnsafeMutableRawBufferPointer.allocate(byteCount: (Self.receiveSlots + 1) * Self.frameCapacity, alignment: 64)
        memory.initializeMemory(as: UInt8.self, repeating: 0)
        completions = Array(repeating: .empty, count: 4)
        do {
            registration = try connection.register(memory, access: [.localWrite])
        } catch {
            connection.close()
            memory.deallocate()
            throw .transport(error)
        }
    }

    deinit {
        // A receive still posted means the exchange did not finish: close first (the
        // connection flushes the receive), then give the memory back.
        if receivesPosted > 0 { connection.close() }
        if let registration { try? connection.deregister(registration) }
        memory.deallocate()
    }

    /// Ends the exchange in failure: closes the connection, so nothing more arrives here.
    public func fail() {
        connection.close()
        receivesPosted = 0
    }

    /// Posts the receives for the peer's frames; call once, before sending anything.
    public func expectFrames() throws(ChannelError) {
        precondition(receivesPosted == 0 && received == 0, "the handshake's receives are posted once")
        guard let registration else { throw .closed(channel: "the handshake") }
        for slot in 0..<Self.receiveSlots {
            do {
                try connection.postReceive(registration.slice(offset: slot * Self.frameCapacity, length: Self.frameCapacity),
                                           id: Self.receiveID + UInt64(slot))
            } catch {
                throw .transport(error)
            }
            receivesPosted += 1
        }
    }

    /// Sends `message` and waits until it completed (the peer's side took it), so the send
    /// buffer is free again and nothing of this exchange is in flight after the last one.
    public func send(_ message: MigrationMessage) throws(ChannelError) {
        guard let registration else { throw .closed(channel: "the handshake") }
        let sendOffset = Self.receiveSlots * Self.frameCapacity
        let area = UnsafeMutableRawBufferPointer(rebasing: memory[sendOffset...])
        let length = try ControlFrame.encode(message, into: area)
        do {
            try connection.postSend(registration.slice(offset: sendOffset, length: length), id: Self.sendID, signaled: true)
        } catch {
            // The peer may have refused and gone already: its last frame, if it came, says why
            // (`next` hands it to the following `receive`).
            if arrived == nil { _ = try? next(.send, operation: "sending \(message.wireName)") }
            if arrived != nil { return }
            throw .transport(error)
        }
        _ = try next(.send, operation: "sending \(message.wireName)")
    }

    /// The peer's next frame, decoded.
    public func receive(operation: String) throws(ChannelError) -> MigrationMessage {
        precondition(receivesPosted > 0, "post the receives before waiting for a frame")
        let completion: Completion
        if let arrived {
            completion = arrived
            self.arrived = nil
        } else {
            completion = try next(.receive, operation: operation)
        }
        receivesPosted -= 1
        // Receives complete in the order they were posted: slot 0, then slot 1.
        let offset = received * Self.frameCapacity
        received += 1
        let frame = UnsafeRawBufferPointer(rebasing: memory[offset..<(offset + min(completion.byteCount, Self.frameCapacity))])
        return try ControlFrame.decode(frame, as: MigrationMessage.self)
    }

    /// Hands the connection on: the buffer is deregistered (no receive is posted any more).
    public func finish() {
        precondition(receivesPosted == 0, "the handshake finished with a receive still posted")
        if let registration { try? connection.deregister(registration) }
        registration = nil
    }

    private func next(_ kind: Completion.Kind, operation: String) throws(ChannelError) -> Completion {
        while true {
            let now = ContinuousClock.now
            guard now < deadline else {
                throw .timedOut(operation: "\(operation) (the whole handshake may take this long)", after: timeout)
            }
            let count = completions.withUnsafeMutableBufferPointer { buffer in
                connection.waitForCompletions(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<1]), timeout: min(deadline - now, .milliseconds(100)))
            }
            if count == 0 {
                if let failure = connection.failure {
                    // The peer said its last word and went: the frame tells why.
                    if kind == .send, let arrived { return arrived }
                    throw .transport(failure)
                }
                continue
            }
            let completion = completions[0]
            if completion.id != Self.sendID {
                guard completion.status == .success else {
                    if kind == .send, let arrived { return arrived }
                    receivesPosted = 0
                    if let failure = connection.failure { throw .transport(failure) }
                    throw .protocolViolation(detail: "a handshake receive completed with \(completion.status) "
                        + "(frames before authentication are at most \(Self.frameCapacity) bytes)")
                }
                guard completion.kind == .receive else {
                    throw .protocolViolation(detail: "a \(completion.kind) arrived during the handshake, where only SENDs may")
                }
                if kind == .receive { return completion }
                arrived = completion
                continue
            }
            guard completion.status == .success else {
                if let arrived { return arrived }
                if let failure = connection.failure { throw .transport(failure) }
                throw .protocolViolation(detail: "a handshake send completed with \(completion.status)")
            }
            guard completion.kind == kind else {
                throw .protocolViolation(detail: "unexpected \(completion.kind) completion during the handshake (waiting for \(kind))")
            }
            return completion
        }
    }
}
