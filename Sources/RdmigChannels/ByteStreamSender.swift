#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport
import Synchronization

/// The sending end of a byte stream (see `ByteStreamReceiver` for the protocol).
///
/// Bytes are gathered in registered staging slots that mirror the receiver's ring (staging
/// slot `i` is written to remote slot `i`), registered once: `write` copies into the current
/// slot, and `write(fromFileDescriptor:)` reads from a descriptor straight into it, so a
/// relayed QEMU stream is copied once, by the kernel. A full slot (or `flush`) is posted as
/// one WRITE_WITH_IMM. A slot may be filled only for a sequence below the receiver's credit
/// limit; the receiver grants credit after reading, which also proves the earlier write of
/// that staging slot finished, so no completion is needed to reuse it.
///
/// One thread writes at a time (checked).
public final class ByteStreamSender: @unchecked Sendable {
    public let ring: StreamRing
    public let router: CompletionRouter

    private let inbox: CompletionInbox
    private let staging: RegisteredBuffer
    private var account: SendQueueAccount
    private var sequence: UInt64 = 0
    private var limit: UInt64
    private var fill = 0
    private var peerClosed = false
    private var finished = false
    private let busy = Atomic<Bool>(false)

    /// Bytes accepted by `write` so far.
    public private(set) var bytesSent: UInt64 = 0
    /// Slots posted so far.
    public var slotsSent: UInt64 { sequence }
    /// How often a write had to wait for the receiver's credit (a slow reader).
    public private(set) var creditWaits: Int = 0
    /// Time spent in those waits (the clock is read only when a write has to wait).
    public private(set) var creditWaitTime: Duration = .zero
    /// Default timeout for waits when the caller gives none.
    public var timeout: Duration = .seconds(30)

    /// Opens the sending end of the stream whose receiver described itself as `ring`.
    public init(router: CompletionRouter, ring: StreamRing) throws(ChannelError) {
        guard ring.channel.rawValue >= 2, ring.channel.rawValue < 0x80 else {
            throw .invalidArgument(detail: "stream channel id \(ring.channel.rawValue) is reserved: use 2-127")
        }
        guard ring.slotCount >= 1, ring.slotSize >= 1,
              UInt64(ring.slotCount) * UInt64(ring.slotSize) <= ring.window.length else {
            throw .invalidArgument(detail: "\(ring.channel) ring of \(ring.slotCount) x \(ring.slotSize) B does not fit its \(ring.window)")
        }
        self.ring = ring
        self.router = router
        limit = UInt64(ring.slotCount)
        let slots = min(ring.slotCount, 32) + 1
        account = SendQueueAccount(capacity: slots, signalInterval: max(1, slots / 2))
        staging = try RegisteredBuffer(connection: router.connection, byteCount: ring.slotCount * ring.slotSize,
                                       access: [.localWrite], purpose: "\(ring.channel) staging slots")
        // Receives for the receiver's grants in flight (at most three per ring) and its close.
        inbox = try router.register(ring.channel, sendSlots: slots, receives: 5)
    }

    // MARK: - Writing

    /// Appends `bytes` to the stream, posting each slot as it fills; waits up to `timeout`
    /// (default: `self.timeout`) each time the receiver has no free slot.
    public func write(_ bytes: UnsafeRawBufferPointer, timeout: Duration? = nil) throws(ChannelError) {
        enter()
        defer { leave() }
        var done = 0
        while done < bytes.count {
            try acquireSlot(timeout: timeout)
            let count = min(bytes.count - done, ring.slotSize - fill)
            (slotBase + fill).copyMemory(from: bytes.baseAddress! + done, byteCount: count)
            fill += count
            done += count
            bytesSent += UInt64(count)
            if fill == ring.slotSize { try postSlot(timeout: timeout) }
        }
    }

    /// One `read(2)` from `fd` straight into the current staging slot. Returns the bytes read,
    /// 0 at end of file. A non-blocking `fd` is waited for with poll up to `timeout`.
    public func write(fromFileDescriptor fd: Int32, timeout: Duration? = nil) throws(ChannelError) -> Int {
        enter()
        defer { leave() }
        try acquireSlot(timeout: timeout)
        while true {
            let result = read(fd, slotBase + fill, ring.slotSize - fill)
            if result > 0 {
                fill += result
                bytesSent += UInt64(result)
                if fill == ring.slotSize { try postSlot(timeout: timeout) }
                return result
            }
            if result == 0 { return 0 }
            let error = SystemCall.currentErrno()
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK {
                try FileDescriptorWait.wait(fd, events: Int16(POLLIN), timeout: timeout ?? self.timeout,
                                            operation: "reading fd \(fd) for \(ring.channel)")
                continue
            }
            throw .system(SystemCallError(call: "read", errno: error, context: "relaying fd \(fd) into \(ring.channel)"))
        }
    }

    /// Relays `fd` into the stream until end of file. A partly filled slot is posted as soon as
    /// `fd` has nothing more to read right now, so a trickling source is not held back
    /// waiting for a full slot. Does not finish the stream. Returns the bytes relayed.
    public func relay(fromFileDescriptor fd: Int32, idleTimeout: Duration? = nil) throws(ChannelError) -> UInt64 {
        var total: UInt64 = 0
        while true {
            let count = try write(fromFileDescriptor: fd, timeout: idleTimeout)
            if count == 0 { return total }
            total += UInt64(count)
            if fill > 0, !FileDescriptorWait.isReadable(fd) { try flush(timeout: idleTimeout) }
        }
    }

    /// Posts the partly filled slot, if any.
    public func flush(timeout: Duration? = nil) throws(ChannelError) {
        enter()
        defer { leave() }
        if fill > 0 { try postSlot(timeout: timeout) }
    }

    /// Flushes, marks the end of the stream and waits until every write has completed
    /// (then all the stream's bytes are in the receiver's ring). Safe to call more than once.
    public func finish(timeout: Duration? = nil) throws(ChannelError) {
        enter()
        defer { leave() }
        guard !finished else { return }
        try checkUsable()
        if fill > 0 { try postSlot(timeout: timeout) }
        let deadline = ContinuousClock.now + (timeout ?? self.timeout)
        try waitForRoom(until: deadline, timeout: timeout)
        try router.postSignal(account: &account, from: ring.channel, to: ring.channel,
                              counter: sequence, flag: true, forceSignal: true)
        finished = true
        while !account.isIdle {
            try handle(router.wait(on: inbox, until: deadline, timeout: timeout ?? self.timeout,
                                   operation: "finishing \(ring.channel): waiting for the last writes to complete"))
        }
    }

    /// Stops using the stream without finishing it (the receiver sees no end marker).
    public func close() {
        router.unregister(ring.channel)
    }

    // MARK: - Slots

    private var slotBase: UnsafeMutableRawPointer {
        staging.memory.baseAddress! + Int(sequence % UInt64(ring.slotCount)) * ring.slotSize
    }

    private func checkUsable() throws(ChannelError) {
        if peerClosed { throw .peerClosed(channel: "\(ring.channel) (the receiver stopped reading)") }
        if finished { throw .closed(channel: "\(ring.channel) (finished)") }
    }

    /// Waits until the current sequence is within the receiver's credit.
    @inline(__always)
    private func acquireSlot(timeout: Duration?) throws(ChannelError) {
        try checkUsable()
        if sequence < limit { return }
        creditWaits += 1
        let wait = timeout ?? self.timeout
        let started = ContinuousClock.now
        let deadline = started + wait
        defer { creditWaitTime += ContinuousClock.now - started }
        while sequence >= limit {
            try handle(router.wait(on: inbox, until: deadline, timeout: wait,
                                   operation: "writing \(ring.channel): waiting for the receiver to free a slot (is it reading?)"))
            try checkUsable()
        }
    }

    private func postSlot(timeout: Duration?) throws(ChannelError) {
        while let completion = inbox.pop() { try handle(completion) }
        if !account.hasRoom {
            let wait = timeout ?? self.timeout
            try waitForRoom(until: ContinuousClock.now + wait, timeout: wait)
        }
        let slot = Int(sequence % UInt64(ring.slotCount))
        let (requestSequence, signaled) = account.claim()
        let local = staging.registration.slice(offset: slot * ring.slotSize, length: fill)
        let remote = ring.window.slice(offset: UInt64(slot * ring.slotSize), length: fill)
        let immediate = ImmediateValue.make(ring.channel, counter: sequence)
        try router.post { connection throws(TransportError) in
            try connection.postWrite(local, to: remote, id: WorkRequestID.make(ring.channel, requestSequence),
                                     signaled: signaled, immediate: immediate)
        }
        sequence += 1
        fill = 0
    }

    private func waitForRoom(until deadline: ContinuousClock.Instant, timeout: Duration?) throws(ChannelError) {
        while !account.hasRoom {
            try handle(router.wait(on: inbox, until: deadline, timeout: timeout ?? self.timeout,
                                   operation: "writing \(ring.channel): waiting for send-queue room"))
        }
    }

    private func handle(_ completion: Completion) throws(ChannelError) {
        switch completion.kind {
        case .write:
            account.complete(sequence: WorkRequestID.sequence(of: completion.id))
        case .receivedWriteWithImmediate:
            let immediate = completion.immediate ?? 0
            if ImmediateValue.hasFlag(immediate) {
                peerClosed = true
            } else {
                let granted = ImmediateValue.extend(ImmediateValue.counter(of: immediate), near: limit)
                guard granted <= sequence + UInt64(ring.slotCount) else {
                    throw .protocolViolation(detail: "\(ring.channel) receiver granted slots up to \(granted) but only \(sequence) were written: it would let this side overwrite unread slots")
                }
                if granted > limit { limit = granted }
            }
        default:
            throw .protocolViolation(detail: "unexpected \(completion.kind) completion on \(ring.channel)'s sending end")
        }
    }

    private func enter() {
        let wasBusy = busy.exchange(true, ordering: .acquiring)
        precondition(!wasBusy, "ByteStreamSender used from two threads at once")
    }

    private func leave() {
        busy.store(false, ordering: .releasing)
    }
}
