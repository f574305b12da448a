#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// One connection of the `tcp` backend: the RDMA semantics of an RC queue pair carried over a
/// TCP socket by a sender and a receiver thread (see `TCPSender`, `TCPReceiver`; the wire
/// format is in `TCPFrameHeader` and `TCPPreamble`).
///
/// Posting and polling run on the caller's threads and only touch lock-free rings; like a
/// verbs QP, one thread may post while another polls.
public final class TCPConnection: TransportConnection, @unchecked Sendable {
    public var backend: TransportBackendKind { .tcp }
    public var localEndpoint: TransportEndpoint { pair.localEndpoint }
    public var peerEndpoint: TransportEndpoint { pair.peerEndpoint }
    public var options: TransportOptions { pair.options }

    let pair: TCPQueuePair
    private let sender: SystemThread
    private let receiver: SystemThread
    private let closed = Mutex(false)

    /// Takes over `fd`, a connected socket whose preambles were exchanged.
    init(fd: Int32, options: TransportOptions) throws(TransportError) {
        let pair: TCPQueuePair
        do {
            let local = try TCPSocket.localEndpoint(of: fd)
            let peer = try TCPSocket.peerEndpoint(of: fd)
            pair = try TCPQueuePair(fd: fd, localEndpoint: local, peerEndpoint: peer, options: options)
        } catch {
            Glibc.close(fd)
            throw error
        }
        self.pair = pair
        let cpus = options.threadCPUs
        do {
            receiver = try SystemThread(name: "rdmig-tcp-rx", cpus: cpus) {
                var receiver = TCPReceiver(pair: pair)
                receiver.run()
            }
        } catch {
            Glibc.close(fd)
            throw .system(error)
        }
        do {
            sender = try SystemThread(name: "rdmig-tcp-tx", cpus: cpus) { TCPSender(pair: pair).run() }
        } catch {
            pair.fail(.system(error), control: nil)
            shutdown(fd, Int32(SHUT_RDWR))
            receiver.join()
            Glibc.close(fd)
            throw .system(error)
        }
    }

    deinit { close() }

    public var failure: TransportError? { pair.failure }

    // MARK: Memory

    public func register(_ memory: UnsafeMutableRawBufferPointer, access: MemoryAccess) throws(TransportError) -> MemoryRegistration {
        guard let base = memory.baseAddress, memory.count > 0 else {
            throw .registrationFailed(detail: "cannot register an empty buffer")
        }
        let address = UInt64(UInt(bitPattern: base))
        let key = try pair.registrations.register(address: address, length: memory.count, access: access)
        return MemoryRegistration(address: address, length: memory.count, localKey: key, remoteKey: key, access: access)
    }

    public func deregister(_ registration: MemoryRegistration) throws(TransportError) {
        let pair = self.pair
        let deadline = ContinuousClock.now + pair.options.connectTimeout
        try pair.registrations.deregister(key: registration.localKey) {
            // The sender reads only while sealing, the receiver writes only while placing: a
            // thread that has exited holds no slot.
            guard !(pair.receiverExited.load(ordering: .acquiring) && pair.senderExited.load(ordering: .acquiring)) else { return false }
            if ContinuousClock.now > deadline {
                // The peer stopped in the middle of a payload into this memory; the memory may
                // be freed after we return, so the receiver must stop touching it.
                pair.fail(.connectionClosed(detail: "deregistering 0x\(String(registration.address, radix: 16))+"
                    + "\(registration.length) waited \(pair.options.connectTimeout) for an incoming write into it"),
                          control: nil)
                shutdown(pair.fd, Int32(SHUT_RDWR))
            }
            return true
        }
    }

    // MARK: Posting

    /// `startEncryption` for tcp: installs both directions' ciphers.
    func startFrameEncryption(_ keys: TransportEncryptionKeys) throws(TransportError) -> Bool {
        guard keys.sendKey.count == 32, keys.receiveKey.count == 32 else {
            throw .invalidWorkRequest(detail: "encryption keys must be 32 bytes (AES-256)")
        }
        try checkOpen()
        pair.receiveCipher.withLock { $0 = TCPFrameCipher(key: keys.receiveKey) }
        pair.sendCipher.withLock { $0 = TCPFrameCipher(key: keys.sendKey) }
        return true
    }

    public func postWrite(_ local: LocalSlice, to remote: RemoteSlice, id: UInt64, signaled: Bool, immediate: UInt32?) throws(TransportError) {
        try checkOpen()
        try checkLocal(local, access: [], what: "WRITE")
        var entry = TCPSendQueue.Entry()
        entry.id = id
        entry.localAddress = local.address
        entry.localKey = local.localKey
        entry.remoteAddress = remote.address
        entry.length = UInt32(local.length)
        entry.remoteKey = remote.remoteKey
        entry.immediate = immediate ?? 0
        entry.hasImmediate = immediate != nil
        entry.opcode = .write
        entry.signaled = signaled
        try post(entry)
    }

    public func postSend(_ local: LocalSlice, id: UInt64, signaled: Bool) throws(TransportError) {
        try checkOpen()
        guard local.length <= pair.options.maxSendBytes else {
            throw .invalidWorkRequest(detail: "SEND of \(local.length) bytes exceeds maxSendBytes "
                + "(\(pair.options.maxSendBytes)): use WRITE for bulk data")
        }
        try checkLocal(local, access: [], what: "SEND")
        var entry = TCPSendQueue.Entry()
        entry.id = id
        entry.localAddress = local.address
        entry.localKey = local.localKey
        entry.length = UInt32(local.length)
        entry.opcode = .send
        entry.signaled = signaled
        try post(entry)
    }

    public func postReceive(_ local: LocalSlice, id: UInt64) throws(TransportError) {
        try checkOpen()
        try checkLocal(local, access: .localWrite, what: "receive")
        let receiveQueue = pair.receiveQueue
        guard receiveQueue.post(.init(id: id, address: local.address, length: local.length, localKey: local.localKey)) else {
            throw .queueFull(queue: "receive", depth: receiveQueue.depth)
        }
        pair.advertiseCreditsIfDue()
        noticeLatePost()
    }

    @inline(__always)
    private func post(_ entry: TCPSendQueue.Entry) throws(TransportError) {
        let sendQueue = pair.sendQueue
        guard sendQueue.post(entry) else { throw .queueFull(queue: "send", depth: sendQueue.depth) }
        pair.senderBell.ring()
        noticeLatePost()
    }

    /// A post that raced with a failure is flushed by the next poll; wake a waiting poller.
    @inline(__always)
    private func noticeLatePost() {
        if !pair.isOpen.load(ordering: .sequentiallyConsistent) { pair.completionBell.forceRing() }
    }

    @inline(__always)
    private func checkOpen() throws(TransportError) {
        guard pair.isOpen.load(ordering: .acquiring) else {
            throw .connectionClosed(detail: pair.failure?.description ?? "closed")
        }
    }

    @inline(__always)
    private func checkLocal(_ local: LocalSlice, access: MemoryAccess, what: String) throws(TransportError) {
        guard local.length >= 0, local.length <= Int(UInt32.max) else {
            throw .invalidWorkRequest(detail: "\(what) of \(local.length) bytes: a work request moves 0 to \(UInt32.max) bytes")
        }
        guard local.length == 0 || pair.registrations.contains(key: local.localKey, address: local.address,
                                                               length: local.length, access: access) else {
            throw .invalidWorkRequest(detail: "\(what) names local memory 0x\(String(local.address, radix: 16))+\(local.length) "
                + "with lkey 0x\(String(local.localKey, radix: 16)), which is not inside memory registered on this connection"
                + (access.contains(.localWrite) ? " with local write access" : ""))
        }
    }

    // MARK: Completions

    public func pollCompletions(into buffer: UnsafeMutableBufferPointer<Completion>) -> Int {
        pair.poll(into: buffer)
    }

    public func waitForCompletions(into buffer: UnsafeMutableBufferPointer<Completion>, timeout: Duration?) -> Int {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        let pair = self.pair
        var spins = 0
        while true {
            let count = pair.poll(into: buffer)
            if count > 0 { return count }
            switch pair.options.completionMode {
            case .busyPoll:
                spins &+= 1
                // Reading the clock costs more than a poll; look at it every 1024 spins.
                if spins & 1023 == 0, let deadline, ContinuousClock.now >= deadline { return 0 }
            case .event:
                var milliseconds: Int32 = -1
                if let deadline {
                    let remaining = deadline - ContinuousClock.now
                    if remaining <= .zero { return 0 }
                    milliseconds = Int32(clamping: Int64((remaining.seconds * 1000).rounded(.up)))
                }
                pair.completionBell.sleep(timeoutMilliseconds: milliseconds) { pair.hasCompletions }
            }
        }
    }

    // MARK: Closing

    public func close() {
        let pair = self.pair
        closed.withLock { closed in
            guard !closed else { return }
            closed = true
            if pair.fail(.connectionClosed(detail: "closed by this side"), control: .close) {
                // The sender finishes its batch and sends CLOSE; the receiver stops placing
                // bytes and drains until the peer, having read CLOSE, hangs up (see
                // TCPReceiver.drainUntilPeerHangsUp). Bounded: a peer that stopped reading or
                // never hangs up is cut off by the shutdown below.
                let deadline = ContinuousClock.now + TCPReceiver.teardownGuard
                let bothExited = { pair.senderExited.load(ordering: .acquiring) && pair.receiverExited.load(ordering: .acquiring) }
                while !bothExited() {
                    let remaining = deadline - ContinuousClock.now
                    if remaining <= .zero { break }
                    pair.exitBell.sleep(timeoutMilliseconds: Int32((remaining.seconds * 1000).rounded(.up)), unless: bothExited)
                }
            }
            shutdown(pair.fd, Int32(SHUT_RDWR))
            sender.join()
            receiver.join()
            Glibc.close(pair.fd)
        }
    }
}
