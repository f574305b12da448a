import RdmigSystem
import RdmigTransport

/// All a peer gets before it has authenticated: one small buffer registered for local access
/// only (no window, nothing the peer can write into directly), at most one receive posted into
/// it at a time, and frames exchanged by SEND, polled on the caller's thread (no poller thread).
///
/// The HELLO/AUTH exchange runs here; the `CompletionRouter` with its receive pool and signal
/// window, and everything after, is created only once it succeeded. A receive is posted for
/// the peer's next frame before this side sends what provokes it, so a peer that follows the
/// protocol never waits for a receive, and after a successful exchange no receive is left
/// posted. On failure the connection is closed before the buffer is freed: a posted receive
/// can never outlive the memory it points to.
public final class HandshakeChannel {
    /// Largest frame either side sends before authentication (HELLO, AUTH, ABORT).
    public static let frameCapacity = 1024

    public let connection: any TransportConnection
    private let memory: UnsafeMutableRawBufferPointer
    private var registration: MemoryRegistration?
    private var receivePosted = false
    private var completions: [Completion]
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
        memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * Self.frameCapacity, alignment: 64)
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
        if receivePosted { connection.close() }
        if let registration { try? connection.deregister(registration) }
        memory.deallocate()
    }

    /// Ends the exchange in failure: closes the connection, so nothing more arrives here.
    public func fail() {
        connection.close()
        receivePosted = false
    }

    /// Posts the one receive for the peer's next frame.
    public func expectFrame() throws(ChannelError) {
        precondition(!receivePosted, "one handshake receive at a time")
        guard let registration else { throw .closed(channel: "the handshake") }
        do {
            try connection.postReceive(registration.slice(offset: 0, length: Self.frameCapacity), id: Self.receiveID)
        } catch {
            throw .transport(error)
        }
        receivePosted = true
    }

    /// Sends `message` and waits until it completed (the peer's side took it), so the send
    /// buffer is free again and nothing of this exchange is in flight after the last one.
    public func send(_ message: MigrationMessage) throws(ChannelError) {
        guard let registration else { throw .closed(channel: "the handshake") }
        let area = UnsafeMutableRawBufferPointer(rebasing: memory[Self.frameCapacity...])
        let length = try ControlFrame.encode(message, into: area)
        do {
            try connection.postSend(registration.slice(offset: Self.frameCapacity, length: length), id: Self.sendID, signaled: true)
        } catch {
            throw .transport(error)
        }
        _ = try next(.send, operation: "sending \(message.wireName)")
    }

    /// The peer's next frame (a receive must be posted), decoded.
    public func receive(operation: String) throws(ChannelError) -> MigrationMessage {
        precondition(receivePosted, "post a receive before waiting for a frame")
        let completion = try next(.receive, operation: operation)
        receivePosted = false
        let frame = UnsafeRawBufferPointer(rebasing: memory[0..<min(completion.byteCount, Self.frameCapacity)])
        return try ControlFrame.decode(frame, as: MigrationMessage.self)
    }

    /// Hands the connection on: the buffer is deregistered (no receive is posted any more).
    public func finish() {
        precondition(!receivePosted, "the handshake finished with a receive still posted")
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
                if let failure = connection.failure { throw .transport(failure) }
                continue
            }
            let completion = completions[0]
            guard completion.status == .success else {
                if completion.kind == .receive || completion.id == Self.receiveID { receivePosted = false }
                if let failure = connection.failure { throw .transport(failure) }
                throw .protocolViolation(detail: "a handshake \(completion.kind) completed with \(completion.status) "
                    + "(frames before authentication are at most \(Self.frameCapacity) bytes)")
            }
            guard completion.kind == kind else {
                throw .protocolViolation(detail: "unexpected \(completion.kind) completion during the handshake (waiting for \(kind))")
            }
            return completion
        }
    }
}
