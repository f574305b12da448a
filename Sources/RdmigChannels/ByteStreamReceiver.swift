#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport
import Synchronization

/// The receiving end of a byte stream: a ring of `slotCount` slots of `slotSize` bytes,
/// registered once and exported as one window (`ring`, which the caller sends to the peer,
/// e.g. as a STREAM_RING control message).
///
/// The sender writes slot `s mod slotCount` for stream sequence `s` with WRITE_WITH_IMM
/// (immediate: channel, `s` mod 2^23; the completion's byte count is the slot's length) and
/// ends the stream with a flagged signal carrying the number of slots. This side consumes
/// slots strictly in order and returns credit as a limit "you may write sequences below L",
/// L = consumed + slotCount, granted each time half the ring has been consumed, so the sender
/// never overwrites a slot that was not read yet. Consuming a slot also proves the sender's
/// write of it finished, so the sender may refill its matching staging slot.
///
/// One thread reads at a time (checked); reads copy out of the ring into the caller's buffer,
/// or write the ring's bytes straight to a file descriptor (`read(toFileDescriptor:)`).
public final class ByteStreamReceiver: @unchecked Sendable {
    public struct Configuration: Sendable, Equatable {
        public var slotCount: Int = 8
        public var slotSize: Int = 64 * 1024
        public init() {}
        public init(slotCount: Int, slotSize: Int) {
            self.slotCount = slotCount
            self.slotSize = slotSize
        }
    }

    /// What the sender needs: send it to the peer before it starts writing.
    public let ring: StreamRing
    public let router: CompletionRouter

    private let inbox: CompletionInbox
    private let buffer: RegisteredBuffer
    private var account = SendQueueAccount(capacity: ByteStreamReceiver.grantSlots, signalInterval: 1)
    private var expected: UInt64 = 0
    private var consumed: UInt64 = 0
    private var grantedAt: UInt64 = 0
    private var slotOffset = 0
    private var slotLength = 0
    private var ended = false
    private var closed = false
    private let busy = Atomic<Bool>(false)
    /// Pipe mode (`splice(toPipe:)`): slots handed to the pipe whose bytes its reader may not
    /// have taken yet, as the pipe offset each ends at, oldest first. A fixed ring (no slot
    /// beyond the credit can be outstanding, so `slotCount` entries suffice).
    private var splicedEnds: [UInt64]
    private var splicedHead = 0
    private var splicedCount = 0
    /// Bytes handed to the pipe so far.
    private var splicedBytes: UInt64 = 0

    /// Bytes handed to the reader so far.
    public private(set) var bytesReceived: UInt64 = 0
    /// Slots the sender wrote so far.
    public var slotsReceived: UInt64 { expected }
    /// True once the sender finished and every byte was read.
    public var isAtEnd: Bool { ended && slotLength == slotOffset }

    static let grantSlots = 4

    public init(router: CompletionRouter, channel: ChannelID, configuration: Configuration = Configuration()) throws(ChannelError) {
        guard channel.rawValue >= 2, channel.rawValue < 0x80 else {
            throw .invalidArgument(detail: "stream channel id \(channel.rawValue) is reserved: use 2-127")
        }
        guard configuration.slotCount >= 1, configuration.slotCount <= 1 << 20,
              configuration.slotSize >= 64, configuration.slotSize <= 1 << 30 else {
            throw .invalidArgument(detail: "a stream ring needs 1-1048576 slots of 64 B-1 GiB, got \(configuration.slotCount) of \(configuration.slotSize) B")
        }
        self.router = router
        buffer = try RegisteredBuffer(connection: router.connection, byteCount: configuration.slotCount * configuration.slotSize,
                                      access: [.localWrite, .remoteWrite], purpose: "\(channel) receive ring")
        ring = StreamRing(channel: channel, window: buffer.registration.window(), slotCount: configuration.slotCount,
                          slotSize: configuration.slotSize)
        splicedEnds = Array(repeating: 0, count: configuration.slotCount)
        // Receives: one per slot written and not yet read, plus the end marker.
        inbox = try router.register(channel, sendSlots: Self.grantSlots, receives: configuration.slotCount + 1)
    }

    // MARK: - Reading

    /// Copies up to `destination.count` bytes of the stream into `destination`, waiting up to
    /// `timeout` (nil: forever) for the sender. Returns 0 at the end of the stream.
    public func read(into destination: UnsafeMutableRawBufferPointer, timeout: Duration?) throws(ChannelError) -> Int {
        enter()
        defer { leave() }
        guard destination.count > 0 else { return 0 }
        guard try fillSlot(timeout: timeout) else { return 0 }
        let count = min(destination.count, slotLength - slotOffset)
        let slot = Int((expected - 1) % UInt64(ring.slotCount))
        destination.baseAddress!.copyMemory(from: buffer.memory.baseAddress! + slot * ring.slotSize + slotOffset, byteCount: count)
        advance(by: count)
        return count
    }

    /// Reads exactly `destination.count` bytes; fails with `.peerClosed` when the stream ends first.
    public func readExactly(into destination: UnsafeMutableRawBufferPointer, timeout: Duration?) throws(ChannelError) {
        var done = 0
        while done < destination.count {
            let count = try read(into: UnsafeMutableRawBufferPointer(rebasing: destination[done...]), timeout: timeout)
            if count == 0 { throw .peerClosed(channel: "\(ring.channel) after \(bytesReceived) bytes, \(destination.count - done) short") }
            done += count
        }
    }

    /// Writes the rest of the current slot straight from the ring to `fd` (blocking or not;
    /// a non-blocking fd is waited for with poll). Returns the bytes written, 0 at the end.
    public func read(toFileDescriptor fd: Int32, timeout: Duration?) throws(ChannelError) -> Int {
        enter()
        defer { leave() }
        guard try fillSlot(timeout: timeout) else { return 0 }
        let slot = Int((expected - 1) % UInt64(ring.slotCount))
        let start = buffer.memory.baseAddress! + slot * ring.slotSize
        var written = 0
        let total = slotLength - slotOffset
        while written < total {
            let result = write(fd, start + slotOffset + written, total - written)
            if result >= 0 {
                written += result
                continue
            }
            let error = SystemCall.currentErrno()
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK {
                do {
                    try FileDescriptorWait.wait(fd, events: Int16(POLLOUT), timeout: timeout, operation: "writing \(ring.channel) to fd \(fd)")
                } catch {
                    // What went out stays counted, so a retry goes on after it instead of
                    // sending it again.
                    advance(by: written)
                    throw error
                }
                continue
            }
            advance(by: written)
            throw .system(SystemCallError(call: "write", errno: error, context: "relaying \(ring.channel) to fd \(fd)"))
        }
        advance(by: written)
        return written
    }

    /// Writes the whole stream to `fd` until the sender finishes; `idleTimeout` bounds each
    /// wait for the sender (nil: forever). Returns the bytes relayed.
    public func relay(toFileDescriptor fd: Int32, idleTimeout: Duration?) throws(ChannelError) -> UInt64 {
        var total: UInt64 = 0
        while true {
            let count = try read(toFileDescriptor: fd, timeout: idleTimeout)
            if count == 0 { return total }
            total += UInt64(count)
        }
    }

    /// Hands the rest of the current slot (or as much as fits) to the pipe `fd` by reference
    /// with vmsplice(2): the pipe's reader copies straight out of the registered ring, so
    /// relaying to a local reader costs no copy here. A slot handed over this way is consumed,
    /// and its credit returned to the sender, only once the reader has taken all its bytes
    /// (FIONREAD on the pipe says how far it got): until then the pipe refers to the slot's
    /// pages and the sender must not overwrite them. `fd` should be non-blocking; a full pipe
    /// is waited for in short slices that also look at the reader's progress. Returns the
    /// bytes handed over, 0 at the end of the stream (then see `waitForPipeReader`).
    public func splice(toPipe fd: Int32, timeout: Duration?) throws(ChannelError) -> Int {
        enter()
        defer { leave() }
        guard try fillSlot(timeout: timeout, pipe: fd) else { return 0 }
        let slot = Int((expected - 1) % UInt64(ring.slotCount))
        let start = buffer.memory.baseAddress! + slot * ring.slotSize + slotOffset
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            let result: PipeCalls.SpliceResult
            do {
                result = try PipeCalls.vmsplice(fd, start, slotLength - slotOffset)
            } catch {
                throw .system(SystemCallError(call: error.call, errno: error.errno, context: "relaying \(ring.channel) into pipe fd \(fd)"))
            }
            if case .handedOver(let count) = result {
                splicedBytes += UInt64(count)
                slotOffset += count
                bytesReceived += UInt64(count)
                if slotOffset == slotLength {
                    splicedEnds[(splicedHead + splicedCount) % splicedEnds.count] = splicedBytes
                    splicedCount += 1
                }
                // FIONREAD takes the pipe's lock, which the reader holds while it copies: ask
                // only once a quarter of the ring waits for it (credit goes back at half), and
                // always before waiting (fillSlot, a full pipe).
                if splicedCount >= confirmThreshold { try confirmPipeProgress(fd) }
                return count
            }
            // Full: the reader frees room as it takes slots, and those slots' credit is due.
            try confirmPipeProgress(fd)
            try FileDescriptorWait.waitSlice(fd, events: Int16(POLLOUT), until: deadline, slice: Self.pipeSlice,
                                             timeout: timeout, operation: "writing \(ring.channel) into pipe fd \(fd) (is its reader reading?)")
        }
    }

    /// Relays the whole stream into the pipe `fd` (see `splice(toPipe:)`) until the sender
    /// finishes, then waits until the pipe's reader has taken every byte.
    public func relay(toPipe fd: Int32, idleTimeout: Duration?) throws(ChannelError) -> UInt64 {
        var total: UInt64 = 0
        while true {
            let count = try splice(toPipe: fd, timeout: idleTimeout)
            if count == 0 { break }
            total += UInt64(count)
        }
        try waitForPipeReader(fd, timeout: idleTimeout)
        return total
    }

    /// Waits until the reader of the pipe `fd` has taken every byte handed to it, or has
    /// closed its end (then nobody will read those bytes). Until then the ring must stay
    /// allocated and unchanged: the pipe refers to its pages.
    public func waitForPipeReader(_ fd: Int32, timeout: Duration?) throws(ChannelError) {
        enter()
        defer { leave() }
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            try confirmPipeProgress(fd)
            if splicedCount == 0 { return }
            // POLLERR on a pipe's write end: no reader is left.
            var descriptor = pollfd(fd: fd, events: 0, revents: 0)
            if poll(&descriptor, 1, 0) > 0, descriptor.revents & Int16(POLLERR) != 0 { return }
            if let deadline, ContinuousClock.now >= deadline {
                throw .timedOut(operation: "waiting for the reader of pipe fd \(fd) to take the last \(ring.channel) bytes", after: timeout ?? .zero)
            }
            usleep(500)
        }
    }

    /// Spliced slots outstanding before `splice(toPipe:)` asks the pipe how far its reader is.
    private var confirmThreshold: Int { max(1, ring.slotCount / 4) }

    /// How long a wait in pipe mode goes without looking at the pipe reader's progress.
    static let pipeSlice = Duration.milliseconds(1)

    /// Consumes the spliced slots the pipe's reader has finished taking (and returns their
    /// credit when due).
    @inline(__always)
    private func confirmPipeProgress(_ fd: Int32) throws(ChannelError) {
        guard splicedCount > 0 else { return }
        let unread: Int
        do {
            unread = try PipeCalls.unread(fd)
        } catch {
            throw .system(error)
        }
        let taken = splicedBytes - UInt64(unread)
        while splicedCount > 0, splicedEnds[splicedHead] <= taken {
            splicedHead = (splicedHead + 1) % splicedEnds.count
            splicedCount -= 1
            consumed += 1
            try? grantIfDue()
        }
    }

    /// Tells the sender to stop (its writes fail with `.peerClosed`) and stops routing to this
    /// end. Safe to call more than once.
    public func close() {
        enter()
        defer { leave() }
        guard !closed else { return }
        closed = true
        if !ended {
            drainNonBlocking()
            if account.hasRoom {
                try? router.postSignal(account: &account, from: ring.channel, to: ring.channel, counter: 0, flag: true)
            }
        }
        router.unregister(ring.channel)
    }

    // MARK: - Slots

    /// Makes the current slot hold unread bytes; false at the end of the stream.
    /// In pipe mode (`pipe` set), slots the pipe's reader still holds keep their credit back
    /// and nothing wakes this thread when the reader takes them: the wait goes in short
    /// slices, looking at the reader's progress between them, until none is outstanding.
    private func fillSlot(timeout: Duration?, pipe: Int32? = nil) throws(ChannelError) -> Bool {
        if slotOffset < slotLength { return true }
        if closed { throw .closed(channel: "\(ring.channel) (receiving end)") }
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while !ended {
            var waitUntil = deadline
            if let pipe {
                try confirmPipeProgress(pipe)
                if splicedCount > 0 {
                    let slice = ContinuousClock.now + Self.pipeSlice
                    waitUntil = deadline.map { min($0, slice) } ?? slice
                }
            }
            let completion: Completion
            do {
                completion = try router.wait(on: inbox, until: waitUntil, timeout: timeout,
                                             operation: "waiting for \(ring.channel) data from the peer")
            } catch .timedOut(let operation, let after) {
                if waitUntil == deadline { throw .timedOut(operation: operation, after: after) }
                continue
            }
            if try handle(completion) { return true }
        }
        return false
    }

    /// True when `completion` made a new slot current.
    private func handle(_ completion: Completion) throws(ChannelError) -> Bool {
        switch completion.kind {
        case .write:
            account.complete(sequence: WorkRequestID.sequence(of: completion.id))
            try? grantIfDue()
            return false
        case .receivedWriteWithImmediate:
            let immediate = completion.immediate ?? 0
            let counter = ImmediateValue.counter(of: immediate)
            let expectedCounter = UInt32(truncatingIfNeeded: expected) & ImmediateValue.counterMask
            if ImmediateValue.hasFlag(immediate) {
                guard counter == expectedCounter else {
                    throw .protocolViolation(detail: "\(ring.channel) ended after slot \(counter) (mod 2^23), but slot \(expectedCounter) was expected next")
                }
                ended = true
                return false
            }
            guard counter == expectedCounter else {
                throw .protocolViolation(detail: "\(ring.channel) slot sequence \(counter) arrived, \(expectedCounter) expected (mod 2^23)")
            }
            guard completion.byteCount > 0, completion.byteCount <= ring.slotSize else {
                throw .protocolViolation(detail: "\(ring.channel) slot \(expected) holds \(completion.byteCount) bytes; slots hold 1-\(ring.slotSize)")
            }
            expected += 1
            slotOffset = 0
            slotLength = completion.byteCount
            return true
        default:
            throw .protocolViolation(detail: "unexpected \(completion.kind) completion on \(ring.channel)'s receiving end")
        }
    }

    @inline(__always)
    private func advance(by count: Int) {
        slotOffset += count
        bytesReceived += UInt64(count)
        if slotOffset == slotLength {
            consumed += 1
            // The bytes were read; a failed grant means the connection failed, and the next
            // wait reports that.
            try? grantIfDue()
        }
    }

    private func grantIfDue() throws(ChannelError) {
        let threshold = UInt64(max(1, ring.slotCount / 2))
        guard !ended, !closed, consumed - grantedAt >= threshold else { return }
        // A full account defers the grant until its completions come back through the inbox.
        guard account.hasRoom else { return }
        try router.postSignal(account: &account, from: ring.channel, to: ring.channel,
                              counter: consumed + UInt64(ring.slotCount), flag: false)
        grantedAt = consumed
    }

    private func drainNonBlocking() {
        while let completion = inbox.pop() {
            if completion.kind == .write {
                account.complete(sequence: WorkRequestID.sequence(of: completion.id))
            }
        }
    }

    private func enter() {
        let wasBusy = busy.exchange(true, ordering: .acquiring)
        precondition(!wasBusy, "ByteStreamReceiver used from two threads at once")
    }

    private func leave() {
        busy.store(false, ordering: .releasing)
    }
}
