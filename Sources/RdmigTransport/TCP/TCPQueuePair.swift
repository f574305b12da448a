#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// The state one `tcp` connection shares between the application's posting and polling
/// threads and its own sender and receiver threads: the socket, the three queues, the
/// registrations, the doorbells, and how the connection failed.
///
/// Failure is decided once (the first `fail` wins, under a lock: it is the cold path). After
/// it, both threads leave; once both are gone the polling thread is the only one touching the
/// queues and turns everything still outstanding into error completions (`poll`), which keeps
/// the completion ring single-producer.
final class TCPQueuePair: @unchecked Sendable {
    /// A last frame the sender thread puts on the wire before it leaves.
    enum ControlFrame: Sendable {
        case close
        case error(TCPFrameHeader.ErrorCode, sequence: UInt64, text: String)
    }

    let fd: Int32
    let localEndpoint: TransportEndpoint
    let peerEndpoint: TransportEndpoint
    let options: TransportOptions

    let sendQueue: TCPSendQueue
    let receiveQueue: TCPReceiveQueue
    let completionQueue: TCPCompletionQueue
    let registrations = TCPRegistrationTable()

    /// Wakes the sender thread: WRs or receives posted, an ACK to send, credits arrived, failure.
    let senderBell: Doorbell
    /// Wakes a `waitForCompletions` in `.event` mode.
    let completionBell: Doorbell
    /// Wakes `close()` waiting for the I/O threads to finish their orderly goodbye.
    let exitBell: Doorbell

    let isOpen = Atomic<Bool>(true)
    /// Set once encryption is on (`TCPConnection.startFrameEncryption`): the sender seals
    /// every WRITE and SEND from then on, the receiver requires and opens them.
    let sendCipher = Mutex<TCPFrameCipher?>(nil)
    let receiveCipher = Mutex<TCPFrameCipher?>(nil)
    private let failureState = Mutex<(failure: TransportError?, control: ControlFrame?)>((nil, nil))

    /// Who may write to the socket, and the ACK state both writers share. The sender thread
    /// holds it while it builds and transmits a batch; the receiver thread only tries it, to
    /// send an ACK at once when the sender is idle (`TCPReceiver.acknowledge`), and never
    /// blocks on the socket while holding it.
    struct WriterState {
        /// The last placed sequence an ACK on the wire carried (its receive count is
        /// `advertisedCredits`).
        var acknowledged: UInt64 = 0
        /// The unsent tail of an ACK the receiver's non-blocking send cut short: the sender
        /// puts it on the wire before anything else (rare: a send buffer with room for part of
        /// 32 bytes).
        var carry: [UInt8] = []
    }
    let writer = Mutex<WriterState>(WriterState())
    /// The receive count the last ACK on the wire carried. Written only by whoever holds
    /// `writer` as it puts that ACK on the wire; read without the lock too (by `postReceive`
    /// and the receiver thread, to decide whether the sender must wake).
    let advertisedCredits = Atomic<UInt64>(0)

    /// How many ACKs the receiving thread's non-blocking send cut short (their tail went to
    /// `WriterState.carry`).
    let carriedAcks = Atomic<Int>(0)
    /// Tests only: the most bytes the receiving thread's non-blocking ACK send may write, to
    /// make the rare short write (a send buffer with room for part of 32 bytes) happen.
    let inlineAckByteLimit = Atomic<Int>(Int.max)

    /// Receiver -> sender: the last completion-requested WR of the peer whose bytes are placed.
    let placedSequence = Atomic<UInt64>(0)
    /// Receiver -> sender: receives the peer has posted in total (its credits for us).
    let peerCredits = Atomic<UInt64>(0)
    /// Set by the receiver thread when the peer refused one of our WRs; read after it left.
    let refusedSequence = Atomic<UInt64>(0)
    let refusedStatus = Atomic<UInt8>(Completion.Status.flushed.rawValue)

    /// A refusal's teardown gave up waiting for the peer to take the ERROR frame (diagnostics).
    let teardownGuardExpired = Atomic<Bool>(false)

    let senderExited = Atomic<Bool>(false)
    let receiverExited = Atomic<Bool>(false)
    private let exitedThreads = Atomic<Int>(0)

    init(fd: Int32, localEndpoint: TransportEndpoint, peerEndpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) {
        self.fd = fd
        self.localEndpoint = localEndpoint
        self.peerEndpoint = peerEndpoint
        self.options = options
        sendQueue = TCPSendQueue(depth: options.sendQueueDepth)
        receiveQueue = TCPReceiveQueue(depth: options.receiveQueueDepth)
        completionQueue = TCPCompletionQueue(capacity: options.sendQueueDepth + options.receiveQueueDepth)
        do {
            senderBell = try Doorbell()
            completionBell = try Doorbell()
            exitBell = try Doorbell()
        } catch {
            throw .system(error)
        }
    }

    var failure: TransportError? { failureState.withLock { $0.failure } }

    /// Whether the receives posted since the last advertisement must be told to the peer now.
    /// Every re-posted receive used to cost an ACK frame, and a wake-up of our sender thread
    /// and of the peer's receiver thread — one each per slot of a byte stream. Now they wait
    /// until the credit the peer still has from us (what we advertised minus what its
    /// messages used) is no more than what we could add (posted, not yet advertised): with a
    /// ring of receives re-posted as they are used, about once per half ring. The peer can
    /// only be stuck when its credit is 0, and then anything posted is due at once. Both
    /// inputs change only by a post (the posting thread asks) or by a message using a receive
    /// (the receiver thread asks), so whenever the peer could be stuck one of them sees it.
    @inline(__always)
    func creditAdvertisementDue(posted: UInt64, advertised: UInt64) -> Bool {
        guard posted != advertised else { return false }
        let used = min(receiveQueue.consumed.load(ordering: .acquiring), advertised)
        return advertised &- used <= posted &- advertised
    }

    /// The posting thread (after a post) or the receiver thread (after using a receive):
    /// wakes the sender when credits are due. The fence orders the caller's store before the
    /// loads here, so of two threads changing the inputs at once at least one sees both changes
    /// (store-load ordering, which release/acquire alone does not give).
    @inline(__always)
    func advertiseCreditsIfDue() {
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if creditAdvertisementDue(posted: receiveQueue.posted.load(ordering: .acquiring),
                                  advertised: advertisedCredits.load(ordering: .acquiring)) {
            senderBell.ring()
        }
    }

    /// Records why the connection stops, if nothing was recorded yet, and wakes everyone.
    /// `control` is the frame the sender thread sends before leaving. Returns whether this
    /// call decided the failure.
    @discardableResult
    func fail(_ error: TransportError, control: ControlFrame?) -> Bool {
        let first = failureState.withLock { state -> Bool in
            guard state.failure == nil else { return false }
            state.failure = error
            state.control = control
            return true
        }
        guard first else { return false }
        isOpen.store(false, ordering: .sequentiallyConsistent)
        senderBell.forceRing()
        completionBell.forceRing()
        return true
    }

    /// Sender thread, when leaving: the frame to send last, at most once.
    func takeControlFrame() -> ControlFrame? {
        failureState.withLock { state in
            defer { state.control = nil }
            return state.control
        }
    }

    /// Called by each I/O thread as its last act; the last one wakes the poller so it flushes.
    func threadExited(sender: Bool) {
        if sender {
            senderExited.store(true, ordering: .releasing)
        } else {
            receiverExited.store(true, ordering: .releasing)
        }
        exitBell.forceRing()
        if exitedThreads.add(1, ordering: .acquiringAndReleasing).newValue == 2 {
            completionBell.forceRing()
        }
    }

    var bothThreadsExited: Bool { exitedThreads.load(ordering: .acquiring) == 2 }

    // MARK: Polling (the application's polling thread only)

    /// Moves finished completions into `buffer`; once both I/O threads are gone, also turns
    /// every WR and receive still outstanding into an error completion, like a verbs QP in the
    /// error state flushes its queues.
    @inline(__always)
    func poll(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        guard buffer.count > 0 else { return 0 }
        var count = drain(into: buffer, from: 0)
        if count < buffer.count && !isOpen.load(ordering: .relaxed) && bothThreadsExited {
            count += drain(into: buffer, from: count)
            count += flush(into: buffer, from: count)
        }
        return count
    }

    @inline(__always)
    private func drain(into buffer: UnsafeMutableBufferPointer<Completion>, from start: Int) -> Int {
        var index = start
        let sendQueue = self.sendQueue
        let receiveQueue = self.receiveQueue
        return completionQueue.pop(limit: buffer.count - start) { entry in
            buffer[index] = entry.completion
            index += 1
            if entry.freesSendThrough != 0 {
                sendQueue.freed.store(entry.freesSendThrough, ordering: .releasing)
            }
            if entry.freesReceive {
                receiveQueue.freed.store(receiveQueue.freed.load(ordering: .relaxed) &+ 1, ordering: .releasing)
            }
        }
    }

    private func flush(into buffer: UnsafeMutableBufferPointer<Completion>, from start: Int) -> Int {
        var index = start
        let refused = refusedSequence.load(ordering: .acquiring)
        let refusedStatus = Completion.Status(rawValue: self.refusedStatus.load(ordering: .acquiring)) ?? .flushed
        // WRs up to `retired` were acknowledged; the unsignalled ones among them just free slots.
        let retired = sendQueue.retired.load(ordering: .acquiring)
        var freed = sendQueue.freed.load(ordering: .relaxed)
        let posted = sendQueue.posted.load(ordering: .acquiring)
        while freed < posted && index < buffer.count {
            let sequence = freed &+ 1
            if sequence > retired {
                let entry = sendQueue[sequence]
                buffer[index] = Completion(id: entry.id, kind: entry.opcode == .write ? .write : .send,
                                           status: sequence == refused ? refusedStatus : .flushed,
                                           byteCount: Int(entry.length))
                index += 1
            }
            freed = sequence
            sendQueue.freed.store(freed, ordering: .releasing)
        }
        var received = max(receiveQueue.freed.load(ordering: .relaxed), receiveQueue.consumed.load(ordering: .acquiring))
        let receivesPosted = receiveQueue.posted.load(ordering: .acquiring)
        while received < receivesPosted && index < buffer.count {
            received &+= 1
            buffer[index] = Completion(id: receiveQueue[received].id, kind: .receive, status: .flushed)
            index += 1
            receiveQueue.freed.store(received, ordering: .releasing)
        }
        return index - start
    }

    /// Whether `poll` would return something now.
    @inline(__always)
    var hasCompletions: Bool {
        if !completionQueue.isEmpty { return true }
        guard !isOpen.load(ordering: .relaxed), bothThreadsExited else { return false }
        return sendQueue.freed.load(ordering: .relaxed) < sendQueue.posted.load(ordering: .acquiring)
            || receiveQueue.freed.load(ordering: .relaxed) < receiveQueue.posted.load(ordering: .acquiring)
    }
}
