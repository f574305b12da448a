#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// The receiver thread of one `tcp` connection: reads frame headers, checks every WRITE's key
/// and bounds against the registrations before placing its payload, then places the payload
/// in the registered memory.
///
/// Small frames come through a staging buffer: one recv takes what the socket holds — often
/// dozens of 4 KiB page WRITEs, ACKs and SENDs — and headers and payloads are copied out of
/// it (measured: two recv calls per 4 KiB WRITE held a migration's scattered pages to
/// ~0.6 GB/s). The part of a payload not yet staged is read straight into its target when
/// it is large, and after a large frame the next header is read on its own, so big WRITEs
/// (coalesced page runs, byte-stream slots) are not copied twice.
/// It produces every completion of the connection: receives, writes with immediate, and the
/// success of our own WRs when the peer's cumulative ACK arrives.
///
/// On a refused frame it reads nothing more: the payload stays unread, the sender thread sends
/// an ERROR frame, and this thread waits until the peer's kernel has it (or a guard time
/// passed), so that closing our socket with unread bytes (an RST) cannot overtake the ERROR.
struct TCPReceiver {
    static let maxErrorTextBytes = 4096
    /// How long a refusing side waits for the peer to take its ERROR, and `close()` for the goodbye.
    static let teardownGuard: Duration = .seconds(2)
    /// POLLRDHUP (include/uapi/asm-generic/poll.h); Glibc's module hides it behind _GNU_SOURCE.
    static let pollReadHangUp: Int16 = 0x2000

    /// Staging for small frames; a payload rest at least `directReadBytes` long skips it.
    static let stagingBytes = 64 << 10
    static let directReadBytes = 16 << 10

    private let pair: TCPQueuePair
    private let header: UnsafeMutableRawPointer
    private let ackHeader: UnsafeMutableRawPointer
    private let staging: UnsafeMutableRawPointer
    /// A sealed frame's tag, read after its payload.
    private let tag: UnsafeMutableRawPointer
    private var stagedStart = 0
    private var stagedEnd = 0
    /// The last payload was large: the next header is read alone, so that the bulk of the
    /// next (probably large) payload is read into its target rather than into staging.
    private var lastPayloadWasLarge = false
    private var expectedSequence: UInt64 = 1

    init(pair: TCPQueuePair) {
        self.pair = pair
        header = .allocate(byteCount: TCPFrameHeader.size, alignment: 8)
        ackHeader = .allocate(byteCount: TCPFrameHeader.size, alignment: 8)
        staging = .allocate(byteCount: Self.stagingBytes, alignment: 64)
        tag = .allocate(byteCount: TCPFrameCipher.tagSize, alignment: 16)
    }

    private enum ReadResult {
        case complete
        case closed(received: Int)
        case failed(errno: Int32)
    }

    mutating func run() {
        defer {
            header.deallocate()
            ackHeader.deallocate()
            staging.deallocate()
            tag.deallocate()
            pair.threadExited(sender: false)
        }
        while true {
            switch read(into: header, count: TCPFrameHeader.size) {
            case .complete: break
            case .closed(let received):
                disconnect(.peerDisconnected(pair.peerEndpoint, detail: received == 0
                    ? "connection closed by peer without a CLOSE frame (did its process exit?)"
                    : "connection closed by peer in the middle of a frame header"))
                return
            case .failed(let error):
                disconnect(TCPSocket.disconnected(pair.peerEndpoint, errno: error))
                return
            }
            if !pair.isOpen.load(ordering: .acquiring) {
                // Failed by another thread: by close() (which waits for us), or by a path that
                // already shut the socket down (then this ends at once).
                drainUntilPeerHangsUp()
                return
            }
            let frame = TCPFrameHeader(decoding: header)
            lastPayloadWasLarge = Int(frame.length) >= Self.directReadBytes
            let keepGoing: Bool
            switch frame.kind {
            case .write: keepGoing = receiveWrite(frame)
            case .send: keepGoing = receiveSend(frame)
            case .ack: keepGoing = receiveAck(frame)
            case .error: keepGoing = receiveError(frame)
            case .close:
                disconnect(.peerDisconnected(pair.peerEndpoint, detail: "closed by peer"))
                keepGoing = false
            case nil:
                violation("received a frame of unknown kind \(frame.kindByte) (header "
                    + TCPPreamble.describe(Array(UnsafeRawBufferPointer(start: header, count: TCPFrameHeader.size))) + ")")
                keepGoing = false
            }
            if !keepGoing { return }
        }
    }

    /// After a local close: discard (never place) whatever the peer still sends until its FIN,
    /// which it sends once it has read our CLOSE. Closing a socket with unread bytes makes
    /// Linux send an RST, and on loopback that RST can overtake the CLOSE still queued on
    /// another CPU's backlog, so the peer would see a reset instead of "closed by peer".
    /// `close()` bounds this wait with a shutdown.
    private func drainUntilPeerHangsUp() {
        let scratchBytes = 64 << 10
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchBytes, alignment: 16)
        defer { scratch.deallocate() }
        while true {
            let received = recv(pair.fd, scratch, scratchBytes, 0)
            if received > 0 { continue }
            if received < 0 && SystemCall.currentErrno() == EINTR { continue }
            break
        }
        shutdown(pair.fd, Int32(SHUT_RDWR))
    }

    // MARK: Frames

    private mutating func checkSequence(_ frame: TCPFrameHeader) -> Bool {
        guard frame.sequence == expectedSequence else {
            violation("WR sequence \(frame.sequence) arrived where \(expectedSequence) was due")
            return false
        }
        guard frame.flags.isSubset(of: .known) else {
            violation("unknown flags 0x\(String(frame.flags.rawValue, radix: 16)) on WR sequence \(frame.sequence)")
            return false
        }
        expectedSequence &+= 1
        return true
    }

    /// The cipher a WRITE or SEND must be opened with: nil for a plain frame on a plain
    /// connection; `.failure` when the frame does not fit the connection's state (a plain
    /// frame once encryption is on — a downgrade — or an encrypted one that never got a key).
    private enum Sealing {
        case plain
        case sealed(TCPFrameCipher)
        case refused

        var cipher: TCPFrameCipher? {
            if case .sealed(let cipher) = self { return cipher }
            return nil
        }
    }

    private func sealing(of frame: TCPFrameHeader) -> Sealing {
        if frame.flags.contains(.encrypted) {
            // The peer turns encryption on right after the handshake, and this side's thread
            // may read its first sealed frame a moment before it installs the key here.
            let deadline = ContinuousClock.now + pair.options.handshakeTimeout
            while ContinuousClock.now < deadline {
                if let cipher = pair.receiveCipher.withLock({ $0 }) { return .sealed(cipher) }
                usleep(200)
            }
            violation("an encrypted frame (WR \(frame.sequence)) on a connection that never turned encryption on")
            return .refused
        }
        guard pair.receiveCipher.withLock({ $0 }) == nil else {
            violation("a plain frame (WR \(frame.sequence)) on an encrypted connection")
            return .refused
        }
        return .plain
    }

    /// Reads the tag after a sealed payload at `target` and opens it in place.
    private mutating func open(_ target: UnsafeMutableRawPointer?, length: Int, frame: TCPFrameHeader, cipher: TCPFrameCipher) -> Bool {
        // The tag and the next header in one bounded read: a full staging refill here pulled
        // the next payload's bulk into staging, which then cost a second copy (memmove was
        // 10% of an encrypted 64 KiB bench transport's samples; see Perf/README.md).
        guard case .complete = read(into: tag, count: TCPFrameCipher.tagSize, readAlong: TCPFrameHeader.size) else {
            disconnect(.peerDisconnected(pair.peerEndpoint, detail: "closed by peer in the middle of a frame's tag"))
            return false
        }
        let opened = cipher.open(UnsafeMutableRawBufferPointer(start: target, count: length),
                                 tag: UnsafeRawBufferPointer(start: tag, count: TCPFrameCipher.tagSize),
                                 header: UnsafeRawBufferPointer(start: header, count: TCPFrameHeader.size), sequence: frame.sequence)
        if !opened {
            violation("WR \(frame.sequence) (\(length) bytes) failed authentication: changed on the path, or not sealed with this session's key")
        }
        return opened
    }

    private mutating func receiveWrite(_ frame: TCPFrameHeader) -> Bool {
        guard checkSequence(frame) else { return false }
        let sealing = sealing(of: frame)
        if case .refused = sealing { return false }
        let cipher = sealing.cipher
        let length = Int(frame.length)
        // As in the IB spec, a zero-length RDMA WRITE touches no memory and checks no key.
        if length > 0 {
            let registrations = pair.registrations
            guard let found = registrations.find(key: frame.key), found.access.contains(.remoteWrite),
                  TCPRegistrationTable.range(address: frame.address, length: UInt64(length), isInside: found),
                  registrations.beginPlacing(found) else {
                refuseWrite(frame)
                return false
            }
            let target = UnsafeMutableRawPointer(bitPattern: UInt(frame.address))!
            let result = read(into: target, count: length)
            guard case .complete = result else {
                registrations.endPlacing()
                disconnect(midPayload: result, what: "a WRITE of \(length) bytes")
                return false
            }
            let opened = cipher.map { open(target, length: length, frame: frame, cipher: $0) } ?? true
            registrations.endPlacing()
            guard opened else { return false }
        } else if let cipher {
            guard open(nil, length: 0, frame: frame, cipher: cipher) else { return false }
        }
        if frame.flags.contains(.hasImmediate) {
            guard let receive = consumeReceive(frame) else { return false }
            // Acknowledge before the completion is visible: a user who closes as soon as it
            // sees the completion must still send the ACK the writer waits for (RC's
            // responder acks before the receive completion surfaces, too).
            if frame.flags.contains(.completionRequested) { acknowledge(frame.sequence) }
            pair.completionQueue.push(.init(
                completion: Completion(id: receive.id, kind: .receivedWriteWithImmediate, status: .success,
                                       byteCount: length, immediate: frame.immediate),
                freesReceive: true))
            pair.completionBell.ring()
            return true
        }
        if frame.flags.contains(.completionRequested) { acknowledge(frame.sequence) }
        return true
    }

    private mutating func receiveSend(_ frame: TCPFrameHeader) -> Bool {
        guard checkSequence(frame) else { return false }
        let sealing = sealing(of: frame)
        if case .refused = sealing { return false }
        let cipher = sealing.cipher
        guard let receive = consumeReceive(frame) else { return false }
        let length = Int(frame.length)
        guard length <= receive.length else {
            pair.completionQueue.push(.init(
                completion: Completion(id: receive.id, kind: .receive, status: .localLengthError, byteCount: length),
                freesReceive: true))
            let error = TransportError.invalidWorkRequest(detail: "an incoming SEND of \(length) bytes does not fit the "
                + "posted receive (id \(receive.id)) of \(receive.length) bytes: post receives of at least the largest "
                + "message the peer sends; connection torn down")
            refuse(error, .receiveTooSmall, sequence: frame.sequence,
                   text: "SEND of \(length) bytes does not fit the peer's posted receive of \(receive.length) bytes")
            return false
        }
        if length > 0 {
            // The registration is looked up again now, not trusted from posting time: memory
            // deregistered (and perhaps freed) since then must never be written.
            let registrations = pair.registrations
            guard let found = registrations.find(key: receive.localKey), found.access.contains(.localWrite),
                  TCPRegistrationTable.range(address: receive.address, length: UInt64(length), isInside: found),
                  registrations.beginPlacing(found) else {
                pair.completionQueue.push(.init(
                    completion: Completion(id: receive.id, kind: .receive, status: .otherError, byteCount: length),
                    freesReceive: true))
                let detail = "an incoming SEND of \(length) bytes found its posted receive (id \(receive.id)) pointing into "
                    + "memory that is no longer registered (local protection error); connection torn down"
                refuse(.invalidWorkRequest(detail: detail), .protocolViolation, sequence: frame.sequence,
                       text: "SEND of \(length) bytes: the peer's posted receive is no longer registered")
                return false
            }
            let target = UnsafeMutableRawPointer(bitPattern: UInt(receive.address))!
            let result = read(into: target, count: length)
            guard case .complete = result else {
                registrations.endPlacing()
                disconnect(midPayload: result, what: "a SEND of \(length) bytes")
                return false
            }
            let opened = cipher.map { open(target, length: length, frame: frame, cipher: $0) } ?? true
            registrations.endPlacing()
            guard opened else { return false }
        } else if let cipher {
            guard open(nil, length: 0, frame: frame, cipher: cipher) else { return false }
        }
        if frame.flags.contains(.completionRequested) { acknowledge(frame.sequence) }
        pair.completionQueue.push(.init(
            completion: Completion(id: receive.id, kind: .receive, status: .success, byteCount: length),
            freesReceive: true))
        pair.completionBell.ring()
        return true
    }

    private func receiveAck(_ frame: TCPFrameHeader) -> Bool {
        let sendQueue = pair.sendQueue
        let retired = sendQueue.retired.load(ordering: .relaxed)
        guard frame.sequence >= retired, frame.sequence <= sendQueue.posted.load(ordering: .acquiring) else {
            violation("ACK for WR sequence \(frame.sequence), but \(retired) were acknowledged and "
                + "\(sendQueue.posted.load(ordering: .acquiring)) posted")
            return false
        }
        guard frame.address >= pair.peerCredits.load(ordering: .relaxed) else {
            violation("receive credits went backwards to \(frame.address)")
            return false
        }
        retire(through: frame.sequence)
        if frame.address != pair.peerCredits.load(ordering: .relaxed) {
            pair.peerCredits.store(frame.address, ordering: .releasing)
            pair.senderBell.ring()
        }
        return true
    }

    private mutating func receiveError(_ frame: TCPFrameHeader) -> Bool {
        let length = Int(frame.length)
        guard length <= TCPReceiver.maxErrorTextBytes else {
            violation("ERROR frame announces \(length) bytes of text (at most \(TCPReceiver.maxErrorTextBytes))")
            return false
        }
        var text = [UInt8](repeating: 0, count: length)
        if length > 0 {
            let result = text.withUnsafeMutableBytes { read(into: $0.baseAddress!, count: length) }
            guard case .complete = result else {
                disconnect(midPayload: result, what: "an ERROR frame")
                return false
            }
        }
        let detail = String(decoding: text, as: UTF8.self)
        let sendQueue = pair.sendQueue
        let offending = frame.sequence
        let knownSequence = offending > sendQueue.retired.load(ordering: .relaxed)
            && offending <= sendQueue.posted.load(ordering: .acquiring)
        let error: TransportError
        switch TCPFrameHeader.ErrorCode(rawValue: frame.key) {
        case .remoteAccess?:
            error = .remoteAccessRefused(detail: detail)
            if knownSequence { refuse(sequence: offending, status: .remoteAccessError) }
        case .receiveTooSmall?:
            error = .rejectedByPeer(pair.peerEndpoint, reason: detail)
            // verbs reports IBV_WC_REM_INV_REQ_ERR here, which Completion.Status has no case for.
            if knownSequence { refuse(sequence: offending, status: .otherError) }
        case .protocolViolation?, nil:
            error = .protocolViolation(detail: "peer \(pair.peerEndpoint) reported: \(detail)")
        }
        disconnect(error)
        return false
    }

    // MARK: Completions and acknowledgements

    /// The peer processed frames in order, so everything before the offending WR was placed.
    private func refuse(sequence: UInt64, status: Completion.Status) {
        retire(through: sequence &- 1)
        pair.refusedStatus.store(status.rawValue, ordering: .releasing)
        pair.refusedSequence.store(sequence, ordering: .releasing)
    }

    /// Our WRs up to `sequence` are placed at the peer: signalled ones complete successfully.
    private func retire(through sequence: UInt64) {
        let sendQueue = pair.sendQueue
        var current = sendQueue.retired.load(ordering: .relaxed)
        guard sequence > current else { return }
        var completed = false
        while current < sequence {
            current &+= 1
            let entry = sendQueue[current]
            if entry.signaled {
                pair.completionQueue.push(.init(
                    completion: Completion(id: entry.id, kind: entry.opcode == .write ? .write : .send,
                                           status: .success, byteCount: Int(entry.length)),
                    freesSendThrough: current))
                completed = true
            }
        }
        sendQueue.retired.store(sequence, ordering: .releasing)
        if completed { pair.completionBell.ring() }
    }

    /// Makes the ACK for `sequence` due. When the sender thread is not writing, this thread
    /// sends it at once — without the sender's wake-up, the round trip a writer waits for at
    /// the end of each signalled batch — with a non-blocking send: this thread must never
    /// block on the socket, or two peers whose buffers are full could each wait for the other
    /// to read. Otherwise (sender busy, socket full) the sender puts it in its next batch.
    private func acknowledge(_ sequence: UInt64) {
        pair.placedSequence.store(sequence, ordering: .releasing)
        let sent = pair.writer.withLockIfAvailable { state -> Bool in
            guard state.carry.isEmpty else { return false }
            let placed = pair.placedSequence.load(ordering: .acquiring)
            let receivesPosted = pair.receiveQueue.posted.load(ordering: .acquiring)
            // The sender's last batch may have carried it already.
            guard placed != state.acknowledged
                || pair.creditAdvertisementDue(posted: receivesPosted, advertised: pair.advertisedCredits.load(ordering: .relaxed))
            else { return true }
            TCPFrameHeader(kind: .ack, address: receivesPosted, sequence: placed).encode(into: ackHeader)
            let length = min(TCPFrameHeader.size, pair.inlineAckByteLimit.load(ordering: .relaxed))
            let written = send(pair.fd, ackHeader, length, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            guard written > 0 else { return false }
            state.acknowledged = placed
            pair.advertisedCredits.store(receivesPosted, ordering: .releasing)
            if written < TCPFrameHeader.size {
                state.carry = Array(UnsafeRawBufferPointer(start: ackHeader + written, count: TCPFrameHeader.size - written))
                pair.carriedAcks.add(1, ordering: .relaxed)
                return false
            }
            return true
        } ?? false
        if !sent { pair.senderBell.ring() }
    }

    private func consumeReceive(_ frame: TCPFrameHeader) -> TCPReceiveQueue.Entry? {
        let receiveQueue = pair.receiveQueue
        let index = receiveQueue.consumed.load(ordering: .relaxed) &+ 1
        guard index <= receiveQueue.posted.load(ordering: .acquiring) else {
            violation("WR sequence \(frame.sequence) needs a posted receive, but none was posted (the peer "
                + "used a receive credit it was not given)")
            return nil
        }
        receiveQueue.consumed.store(index, ordering: .releasing)
        // The peer used a credit: if it is now short of them, the posted ones must go out.
        pair.advertiseCreditsIfDue()
        return receiveQueue[index]
    }

    // MARK: Teardown

    private func refuseWrite(_ frame: TCPFrameHeader) {
        let target = "WRITE of \(frame.length) bytes to 0x\(String(frame.address, radix: 16)) with rkey 0x\(String(frame.key, radix: 16))"
        let reason: String
        if let found = pair.registrations.find(key: frame.key) {
            let window = "window 0x\(String(found.address, radix: 16))+\(found.length) rkey 0x\(String(frame.key, radix: 16))"
            reason = found.access.contains(.remoteWrite)
                ? "\(target) reaches outside the \(window)"
                : "\(target) names a registration (\(window)) that does not allow remote writes"
        } else {
            reason = "\(target) names no exported window (unknown or deregistered key)"
        }
        let detail = "\(reason); nothing was written and the connection is torn down"
        refuse(.invalidRemoteAccess(detail: detail), .remoteAccess, sequence: frame.sequence, text: detail)
    }

    private func violation(_ detail: String) {
        let text = "from \(pair.peerEndpoint): \(detail)"
        refuse(.protocolViolation(detail: text), .protocolViolation, sequence: 0, text: detail)
    }

    /// Fails the connection with `error`, has the sender tell the peer why, and waits (bounded)
    /// until the peer's kernel has that frame (see `waitUntilThePeerHasTheErrorFrame`).
    private func refuse(_ error: TransportError, _ code: TCPFrameHeader.ErrorCode, sequence: UInt64, text: String) {
        guard pair.fail(error, control: .error(code, sequence: sequence, text: text)) else { return }
        // No shutdown for reading here: with RCV_SHUTDOWN set in FIN_WAIT, Linux answers any
        // further data from the peer (the rest of a refused payload) with an RST
        // (LINUX_MIB_TCPABORTONDATA, RFC 1122), which could reach the peer before it has read
        // our ERROR. The unread bytes stay until close(); the sender thread leaves by itself
        // after ERROR and FIN.
        if !waitUntilThePeerHasTheErrorFrame() {
            pair.teardownGuardExpired.store(true, ordering: .releasing)
            shutdown(pair.fd, Int32(SHUT_RDWR))
        }
    }

    /// Cold path, 1 ms naps: first until the sender thread has written ERROR and FIN, then
    /// until the peer's kernel acknowledged them (SIOCOUTQ 0) or the peer hung up (POLLRDHUP,
    /// seen even while the refused payload sits unread). Once acknowledged, the ERROR is in
    /// the peer's receive queue, which an RST from our later close does not purge (tcp_reset
    /// -> tcp_done leaves sk_receive_queue alone). The peer's own FIN is no signal to wait
    /// for: a refused write larger than the socket buffers leaves the peer's send queue full,
    /// and its FIN queues behind that payload. False when the guard time ran out.
    private func waitUntilThePeerHasTheErrorFrame() -> Bool {
        let deadline = ContinuousClock.now + TCPReceiver.teardownGuard
        while ContinuousClock.now < deadline {
            var descriptor = pollfd(fd: pair.fd, events: TCPReceiver.pollReadHangUp, revents: 0)
            if poll(&descriptor, 1, 1) > 0 { return true }
            guard pair.senderExited.load(ordering: .acquiring) else { continue }
            var unacknowledged: Int32 = 0
            if ioctl(pair.fd, UInt(TIOCOUTQ), &unacknowledged) == 0 && unacknowledged == 0 { return true }
        }
        return false
    }

    private func disconnect(_ error: TransportError) {
        pair.fail(error, control: nil)
        shutdown(pair.fd, Int32(SHUT_RDWR))
    }

    private func disconnect(midPayload result: ReadResult, what: String) {
        switch result {
        case .failed(let error): disconnect(TCPSocket.disconnected(pair.peerEndpoint, errno: error))
        default: disconnect(.peerDisconnected(pair.peerEndpoint, detail: "connection closed by peer in the middle of \(what)"))
        }
    }

    /// Reads exactly `count` bytes: first what is staged, then — for a rest of at least
    /// `directReadBytes` — straight into `target` (MSG_WAITALL lets the kernel fill it in few
    /// wakeups), otherwise by refilling the staging buffer with whatever the socket holds.
    /// After a large payload the refill is bounded instead: to the header alone, or, for a
    /// sealed frame's tag, to the tag and the `readAlong` bytes of the next header behind it.
    private mutating func read(into target: UnsafeMutableRawPointer, count: Int, readAlong: Int = 0) -> ReadResult {
        var offset = 0
        while offset < count {
            let staged = stagedEnd - stagedStart
            if staged > 0 {
                let take = min(staged, count - offset)
                (target + offset).copyMemory(from: staging + stagedStart, byteCount: take)
                offset += take
                stagedStart += take
                if stagedStart == stagedEnd { (stagedStart, stagedEnd) = (0, 0) }
                continue
            }
            let rest = count - offset
            let direct = rest >= Self.directReadBytes
            let bounded = lastPayloadWasLarge && (count == TCPFrameHeader.size || readAlong > 0)
            let want = direct ? rest : (bounded ? rest + readAlong : Self.stagingBytes)
            let received = recv(pair.fd, direct ? target + offset : staging, want, direct ? Int32(MSG_WAITALL) : 0)
            if received > 0 {
                if direct { offset += received } else { stagedEnd = received }
            } else if received == 0 {
                return .closed(received: offset)
            } else {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                return .failed(errno: error)
            }
        }
        return .complete
    }
}
