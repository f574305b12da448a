#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// The sender thread of one `tcp` connection: puts posted WRs on the wire in order, each as
/// a header followed by the payload straight from the registered memory (one writev for a
/// batch of frames), sends coalesced ACKs and receive credits, and at the end a CLOSE or ERROR.
///
/// SEND and WRITE_WITH_IMM wait for a receive credit (the peer advertises how many receives it
/// has posted): this is how verbs' RNR retry with rnr_retry=7 behaves (the QP waits until a
/// receive is posted), without the receiver having to stall its socket reads, so ACKs for the
/// other direction keep flowing. Later WRs wait behind it, as on a verbs send queue.
struct TCPSender {
    /// Frames per writev; perftest posts lists of WRs, here one syscall carries up to this many.
    static let framesPerBatch = 32
    /// A batch stops growing here, so CLOSE/ERROR after it are not delayed for long.
    static let bytesPerBatch = 4 << 20

    private let pair: TCPQueuePair
    private let headers: UnsafeMutableRawPointer
    private let vectors: UnsafeMutablePointer<iovec>
    /// Where a batch's frames are sealed when encryption is on (registered memory is never
    /// written): ciphertext and tag of each frame, back to back.
    private let sealed = SealBuffer(capacity: TCPSender.bytesPerBatch + (TCPSender.framesPerBatch + 1) * TCPFrameCipher.tagSize)
    /// A batch of sealed frames, built before the writer lock is taken (`sealFrames`): each
    /// frame's header, and its vectors (header, then ciphertext and tag).
    private let sealedHeaders: UnsafeMutableRawPointer
    private let sealedVectors: UnsafeMutablePointer<iovec>

    /// Grows only between batches (the vectors of a batch point into it).
    final class SealBuffer {
        private(set) var base: UnsafeMutableRawPointer
        private(set) var capacity: Int
        var used = 0

        init(capacity: Int) {
            self.capacity = capacity
            base = .allocate(byteCount: capacity, alignment: 64)
        }

        deinit { base.deallocate() }

        /// Room for `count` more bytes, growing when empty; nil when the batch must end first.
        func reserve(_ count: Int) -> UnsafeMutableRawBufferPointer? {
            if used + count > capacity {
                guard used == 0 else { return nil }
                base.deallocate()
                capacity = count
                base = .allocate(byteCount: capacity, alignment: 64)
            }
            defer { used += count }
            return UnsafeMutableRawBufferPointer(start: base + used, count: count)
        }
    }

    init(pair: TCPQueuePair) {
        self.pair = pair
        // One header per frame of a batch, and a last slot for an ACK's carried-over tail.
        headers = .allocate(byteCount: (TCPSender.framesPerBatch + 1) * TCPFrameHeader.size, alignment: 8)
        // Room for a carried-over ACK tail and an ACK ahead of a full batch of sealed frames.
        vectors = .allocate(capacity: 2 * TCPSender.framesPerBatch + 2)
        sealedHeaders = .allocate(byteCount: TCPSender.framesPerBatch * TCPFrameHeader.size, alignment: 8)
        sealedVectors = .allocate(capacity: 2 * TCPSender.framesPerBatch)
    }

    func run() {
        defer {
            headers.deallocate()
            vectors.deallocate()
            sealedHeaders.deallocate()
            sealedVectors.deallocate()
            pair.threadExited(sender: true)
        }
        let sendQueue = pair.sendQueue
        let receiveQueue = pair.receiveQueue
        var transmitted: UInt64 = 0
        var creditsUsed: UInt64 = 0

        while true {
            if !pair.isOpen.load(ordering: .acquiring) {
                finish()
                return
            }
            let cipher = pair.sendCipher.withLock { $0 }
            // Sealing is the costly part of a sealed batch: it runs before the writer lock is
            // taken, so that meanwhile the receiver thread can still send its ACKs at once.
            var sealedVectorCount = 0
            if let cipher {
                guard let count = sealFrames(cipher, after: &transmitted, creditsUsed: &creditsUsed) else { continue }
                sealedVectorCount = count
            }
            let batch = pair.writer.withLock { state -> (vectors: Int, error: Int32?) in
                var frames = 0
                var vectorCount = 0
                var batchBytes = 0
                if !state.carry.isEmpty {
                    let slot = headers + TCPSender.framesPerBatch * TCPFrameHeader.size
                    state.carry.withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    vectors[vectorCount] = iovec(iov_base: slot, iov_len: state.carry.count)
                    vectorCount += 1
                    frames += 1
                    state.carry = []
                }

                let placed = pair.placedSequence.load(ordering: .acquiring)
                let receivesPosted = receiveQueue.posted.load(ordering: .acquiring)
                if placed != state.acknowledged
                    || pair.creditAdvertisementDue(posted: receivesPosted, advertised: pair.advertisedCredits.load(ordering: .relaxed)) {
                    let header = headers
                    TCPFrameHeader(kind: .ack, address: receivesPosted, sequence: placed).encode(into: header)
                    vectors[vectorCount] = iovec(iov_base: header, iov_len: TCPFrameHeader.size)
                    vectorCount += 1
                    frames += 1
                    batchBytes += TCPFrameHeader.size
                    state.acknowledged = placed
                    pair.advertisedCredits.store(receivesPosted, ordering: .releasing)
                }

                if cipher != nil {
                    (vectors + vectorCount).update(from: sealedVectors, count: sealedVectorCount)
                    vectorCount += sealedVectorCount
                    return (vectorCount, vectorCount > 0 ? transmit(vectorCount) : nil)
                }

                let posted = sendQueue.posted.load(ordering: .acquiring)
                let credits = pair.peerCredits.load(ordering: .acquiring)
                while transmitted < posted && frames < TCPSender.framesPerBatch && batchBytes < TCPSender.bytesPerBatch {
                    let sequence = transmitted &+ 1
                    let entry = sendQueue[sequence]
                    if entry.consumesReceive {
                        guard creditsUsed < credits else { break }
                        creditsUsed &+= 1
                    }
                    let header = headers + frames * TCPFrameHeader.size
                    Self.header(of: entry, sequence: sequence, encrypted: false).encode(into: header)
                    vectors[vectorCount] = iovec(iov_base: header, iov_len: TCPFrameHeader.size)
                    vectorCount += 1
                    if entry.length > 0 {
                        vectors[vectorCount] = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(entry.localAddress)),
                                                     iov_len: Int(entry.length))
                        vectorCount += 1
                    }
                    frames += 1
                    batchBytes += TCPFrameHeader.size + Int(entry.length)
                    transmitted = sequence
                }
                // Transmitted under the lock: the receiver's ACKs never land inside a batch.
                return (vectorCount, vectorCount > 0 ? transmit(vectorCount) : nil)
            }

            if batch.vectors == 0 {
                pair.senderBell.sleep(timeoutMilliseconds: -1) {
                    if !pair.isOpen.load(ordering: .acquiring) { return true }
                    let (acknowledged, carry) = pair.writer.withLock { ($0.acknowledged, !$0.carry.isEmpty) }
                    if carry { return true }
                    if pair.placedSequence.load(ordering: .acquiring) != acknowledged { return true }
                    if pair.creditAdvertisementDue(posted: receiveQueue.posted.load(ordering: .acquiring),
                                                   advertised: pair.advertisedCredits.load(ordering: .acquiring)) { return true }
                    guard sendQueue.posted.load(ordering: .acquiring) > transmitted else { return false }
                    return !sendQueue[transmitted &+ 1].consumesReceive
                        || creditsUsed < pair.peerCredits.load(ordering: .acquiring)
                }
                continue
            }
            if let error = batch.error {
                switch error {
                case ECONNRESET, EPIPE, ETIMEDOUT, ECONNABORTED, EHOSTUNREACH, ENETUNREACH:
                    // The connection is gone; the receiver thread will see that too, but only
                    // after it has read what the peer sent before, which may be the ERROR or
                    // CLOSE that explains why. So the receiver decides the failure.
                    break
                default:
                    pair.fail(.system(SystemCallError(call: "sendmsg", errno: error,
                                                      context: "sending to \(pair.peerEndpoint)")), control: nil)
                    shutdown(pair.fd, Int32(SHUT_RDWR))
                }
                return
            }
        }
    }

    /// The next WRs of the send queue (as many as a batch takes), each header encoded into
    /// `sealedHeaders` and its payload sealed from registered memory into `sealed`, their
    /// vectors in `sealedVectors`; advances `transmitted` past them. Returns the vector count,
    /// nil when the connection failed here.
    private func sealFrames(_ cipher: TCPFrameCipher, after transmitted: inout UInt64, creditsUsed: inout UInt64) -> Int? {
        let sendQueue = pair.sendQueue
        let registrations = pair.registrations
        let posted = sendQueue.posted.load(ordering: .acquiring)
        let credits = pair.peerCredits.load(ordering: .acquiring)
        sealed.used = 0
        var frames = 0
        var batchBytes = 0
        while transmitted < posted && frames < TCPSender.framesPerBatch && batchBytes < TCPSender.bytesPerBatch {
            let sequence = transmitted &+ 1
            let entry = sendQueue[sequence]
            if entry.consumesReceive {
                guard creditsUsed < credits else { break }
            }
            guard let sealedArea = sealed.reserve(Int(entry.length) + TCPFrameCipher.tagSize) else { break }
            if entry.consumesReceive { creditsUsed &+= 1 }
            let header = sealedHeaders + frames * TCPFrameHeader.size
            Self.header(of: entry, sequence: sequence, encrypted: true).encode(into: header)
            // This thread reads the payload itself here: only from a registration that is
            // still live, and deregistration waits until it is done (the memory may be freed
            // right after, as after ibv_dereg_mr).
            var reading = false
            if entry.length > 0 {
                guard let found = registrations.find(key: entry.localKey),
                      TCPRegistrationTable.range(address: entry.localAddress, length: UInt64(entry.length), isInside: found),
                      registrations.beginSending(found) else {
                    pair.fail(.invalidWorkRequest(detail: "WR \(sequence) reads \(entry.length) bytes from memory that is no "
                        + "longer registered (local protection error): deregister only after its work completed"), control: nil)
                    return nil
                }
                reading = true
            }
            let payload = UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(entry.localAddress)), count: Int(entry.length))
            let sealedOK = cipher.seal(payload, header: UnsafeRawBufferPointer(start: header, count: TCPFrameHeader.size),
                                       sequence: sequence, into: sealedArea)
            if reading { registrations.endSending() }
            guard sealedOK else {
                pair.fail(.protocolViolation(detail: "encrypting WR \(sequence) failed"), control: nil)
                return nil
            }
            sealedVectors[2 * frames] = iovec(iov_base: header, iov_len: TCPFrameHeader.size)
            sealedVectors[2 * frames + 1] = iovec(iov_base: sealedArea.baseAddress, iov_len: sealedArea.count)
            frames += 1
            batchBytes += TCPFrameHeader.size + Int(entry.length)
            transmitted = sequence
        }
        return 2 * frames
    }

    /// The frame header that carries WR `sequence`.
    private static func header(of entry: TCPSendQueue.Entry, sequence: UInt64, encrypted: Bool) -> TCPFrameHeader {
        var flags: TCPFrameHeader.Flags = []
        if entry.hasImmediate { flags.insert(.hasImmediate) }
        if entry.signaled { flags.insert(.completionRequested) }
        if encrypted { flags.insert(.encrypted) }
        return TCPFrameHeader(kind: entry.opcode == .write ? .write : .send, flags: flags, key: entry.remoteKey,
                              address: entry.remoteAddress, length: entry.length, immediate: entry.immediate, sequence: sequence)
    }

    /// Writes `count` vectors completely; returns the errno when the socket failed.
    private func transmit(_ count: Int) -> Int32? {
        var first = 0
        var message = msghdr()
        while first < count {
            message.msg_iov = vectors + first
            message.msg_iovlen = count - first
            let sent = sendmsg(pair.fd, &message, Int32(MSG_NOSIGNAL))
            if sent < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                return error
            }
            var remaining = sent
            while first < count && remaining >= vectors[first].iov_len {
                remaining -= vectors[first].iov_len
                first += 1
            }
            if remaining > 0 {
                vectors[first].iov_base = vectors[first].iov_base! + remaining
                vectors[first].iov_len -= remaining
            }
        }
        return nil
    }

    /// Last words: the CLOSE or ERROR frame the failure asked for, then FIN.
    private func finish() {
        pair.writer.withLock { state in
            if !state.carry.isEmpty {
                let slot = headers + TCPSender.framesPerBatch * TCPFrameHeader.size
                state.carry.withUnsafeBytes { slot.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                vectors[0] = iovec(iov_base: slot, iov_len: state.carry.count)
                state.carry = []
                _ = transmit(1)
            }
            lastWords()
        }
        shutdown(pair.fd, Int32(SHUT_WR))
    }

    private func lastWords() {
        if let control = pair.takeControlFrame() {
            switch control {
            case .close:
                // A last cumulative ACK first: what was placed before close() must complete
                // successfully on the peer, as an RC responder's acks would have.
                let placed = pair.placedSequence.load(ordering: .acquiring)
                let receivesPosted = pair.receiveQueue.posted.load(ordering: .acquiring)
                TCPFrameHeader(kind: .ack, address: receivesPosted, sequence: placed).encode(into: headers)
                TCPFrameHeader(kind: .close).encode(into: headers + TCPFrameHeader.size)
                vectors[0] = iovec(iov_base: headers, iov_len: 2 * TCPFrameHeader.size)
                _ = transmit(1)
            case .error(let code, let sequence, let text):
                var bytes = Array(text.utf8.prefix(TCPReceiver.maxErrorTextBytes))
                TCPFrameHeader(kind: .error, key: code.rawValue, length: UInt32(bytes.count), sequence: sequence).encode(into: headers)
                bytes.withUnsafeMutableBytes { text in
                    vectors[0] = iovec(iov_base: headers, iov_len: TCPFrameHeader.size)
                    vectors[1] = iovec(iov_base: text.baseAddress, iov_len: text.count)
                    _ = transmit(text.count > 0 ? 2 : 1)
                }
            }
        }
    }
}
