#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
@testable import RdmigTransport
import Synchronization
import Testing

/// Behaviour of established `tcp` connections that the shared conformance suite cannot see:
/// exact error details, frames from a raw peer, thread pinning.
@Suite struct TCPConnectionTests {
    let tcp = TCPTransport()

    /// A connected pair over loopback (`host`: 127.0.0.1 or ::1).
    func connectedPair(_ options: TransportOptions = TransportOptions(), host: String = "127.0.0.1") throws -> (client: TCPConnection, server: TCPConnection) {
        let listener = try tcp.listener(on: TransportEndpoint(host: host, port: 0), options: options)
        defer { listener.close() }
        let accepted = Mutex<TCPConnection?>(nil)
        let thread = try TCPRawPeer.onThread {
            let connection = try? listener.acceptConnection(timeout: .seconds(5))
            accepted.withLock { $0 = connection }
        }
        let client = try tcp.connection(to: listener.localEndpoint, options: options)
        thread.join()
        let server = try #require(accepted.withLock { $0 })
        return (client, server)
    }

    /// A client connection to a raw peer that ran `script` on its side (on its own thread).
    func connectionToRawPeer(_ script: @escaping @Sendable (TCPRawPeer) -> Void) throws -> (TCPConnection, SystemThread) {
        let (rawListener, port) = try TCPRawPeer.listen()
        let thread = try TCPRawPeer.onThread {
            let raw = rawListener.accept()
            raw.send(TCPPreamble.encode())
            guard raw.receive(TCPPreamble.size) == TCPPreamble.encode() else { return }
            script(raw)
            withExtendedLifetime(rawListener) {}
        }
        let connection = try tcp.connection(to: TransportEndpoint(host: "127.0.0.1", port: port), options: TransportOptions())
        return (connection, thread)
    }

    /// Posts unless the connection already failed (the post may race with the peer's hang-up).
    func postUnlessClosed(_ body: () throws(TransportError) -> Void) throws(TransportError) -> Bool {
        do {
            try body()
            return true
        } catch {
            guard case .connectionClosed = error else { throw error }
            return false
        }
    }

    func waitForOne(_ connection: TCPConnection) -> Completion? {
        let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 1)
        defer { buffer.deallocate() }
        return connection.waitForCompletions(into: buffer, timeout: .seconds(5)) == 1 ? buffer[0] : nil
    }

    @Test func anAckTheReceivingThreadSentOnlyInPartIsFinishedByTheSenderThreadBeforeAnythingElse() throws {
        let (client, server) = try connectedPair()
        let window = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 4096, alignment: 4096)
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 4096, alignment: 4096)
        defer {
            client.close()
            server.close()
            window.deallocate()
            source.deallocate()
        }
        for index in 0..<source.count { source[index] = UInt8(truncatingIfNeeded: index &* 7 &+ index >> 12) }
        window.initializeMemory(as: UInt8.self, repeating: 0)
        let target = try server.register(window, access: [.localWrite, .remoteWrite])
        let local = try client.register(source, access: .localWrite)
        // Every ACK the server's receiving thread sends itself stops after 7 of its 32 bytes:
        // the other 25 must go out first in the sender thread's next batch, or the client reads
        // a garbled frame.
        server.pair.inlineAckByteLimit.store(7, ordering: .relaxed)
        // One signalled write at a time, so the server's sender thread is idle when each ACK
        // is due and its receiving thread sends it.
        for page in 0..<64 {
            try client.postWrite(local.slice(offset: page * 4096, length: 4096),
                                 to: target.window().slice(offset: UInt64(page * 4096), length: 4096),
                                 id: UInt64(page), signaled: true)
            let completion = try #require(waitForOne(client), "write \(page) did not complete: \(String(describing: client.failure))")
            #expect(completion.id == UInt64(page) && completion.status == .success)
        }
        #expect(server.pair.carriedAcks.load(ordering: .relaxed) > 0, "no ACK was cut short: the carry path did not run")
        #expect(client.failure == nil && server.failure == nil)
        #expect(memcmp(window.baseAddress!, source.baseAddress!, source.count) == 0)
    }

    /// The traffic-class byte of `fd` (IP_TOS, or IPV6_TCLASS on an IPv6 socket).
    func trafficClass(of fd: Int32, ipv6: Bool) -> Int32 {
        var value: Int32 = -1
        var length = socklen_t(MemoryLayout<Int32>.size)
        let result = ipv6 ? getsockopt(fd, Int32(IPPROTO_IPV6), TCPSocket.ipv6TrafficClass, &value, &length)
            : getsockopt(fd, Int32(IPPROTO_IP), IP_TOS, &value, &length)
        return result == 0 ? value : -1
    }

    @Test(arguments: [("127.0.0.1", false), ("::1", true)])
    func bothEndsMarkTheirPacketsWithTheTrafficClassAskedFor(host: String, ipv6: Bool) throws {
        var options = TransportOptions()
        options.trafficClass = 0x68
        let (client, server) = try connectedPair(options, host: host)
        defer {
            client.close()
            server.close()
        }
        #expect(trafficClass(of: client.pair.fd, ipv6: ipv6) == 0x68)
        #expect(trafficClass(of: server.pair.fd, ipv6: ipv6) == 0x68)
        let (plainClient, plainServer) = try connectedPair()
        defer {
            plainClient.close()
            plainServer.close()
        }
        #expect(trafficClass(of: plainClient.pair.fd, ipv6: false) == 0, "without a traffic class the default stays")
    }

    @Test func refusedWriteNamesAddressLengthKeyAndWindowOnBothSides() throws {
        let (client, server) = try connectedPair()
        let window = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 4096)
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer {
            client.close()
            server.close()
            window.deallocate()
            source.deallocate()
        }
        let target = try server.register(window, access: [.localWrite, .remoteWrite])
        let local = try client.register(source, access: .localWrite)
        let address = target.address + 14336
        try client.postWrite(local.wholeSlice, to: RemoteSlice(address: address, remoteKey: target.remoteKey), id: 1, signaled: false)
        let completion = try #require(waitForOne(client))
        #expect(completion.id == 1 && completion.status == .remoteAccessError)
        guard case .remoteAccessRefused(let detail)? = client.failure else {
            Issue.record("writer reports \(String(describing: client.failure))")
            return
        }
        let key = String(target.remoteKey, radix: 16)
        #expect(detail.contains("WRITE of 4096 bytes to 0x\(String(address, radix: 16)) with rkey 0x\(key)"), "\(detail)")
        #expect(detail.contains("window 0x\(String(target.address, radix: 16))+16384 rkey 0x\(key)"), "\(detail)")
        #expect(detail.contains("nothing was written"), "\(detail)")
        #expect(server.failure == .invalidRemoteAccess(detail: detail))
    }

    @Test func refusingAWriteLargerThanTheSocketBuffersDoesNotWaitForTheWritersFIN() throws {
        // 32 MiB cannot fit in the socket buffers: the writer's FIN queues behind unsent payload,
        // so the refusing side must learn from the ACK of its ERROR frame that the writer has it.
        let (client, server) = try connectedPair()
        let size = 32 << 20
        let window = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer {
            client.close()
            server.close()
            window.deallocate()
            source.deallocate()
        }
        let target = try server.register(window, access: [.localWrite, .remoteWrite])
        let local = try client.register(source, access: .localWrite)
        let receive = try server.register(UnsafeMutableRawBufferPointer(rebasing: window[0..<64]), access: .localWrite)
        try server.postReceive(receive.wholeSlice, id: 4)
        try client.postWrite(local.wholeSlice, to: target.window().slice(offset: 0, length: size), id: 1, signaled: true)
        #expect(waitForOne(server) == Completion(id: 4, kind: .receive, status: .flushed))
        let guardExpired = server.pair.teardownGuardExpired.load(ordering: .acquiring)
        #expect(!guardExpired, "the refusing side waited out its guard")
        #expect(waitForOne(client) == Completion(id: 1, kind: .write, status: .remoteAccessError, byteCount: size))
        guard case .remoteAccessRefused? = client.failure else {
            Issue.record("writer reports \(String(describing: client.failure))")
            return
        }
    }

    /// The audit's first finding, at the transport: a receive posted into memory that was
    /// deregistered since (and might be freed) must never be written. Like a verbs device,
    /// whose receive fails once its MR is gone, the tcp backend looks the registration up again
    /// before it places a SEND, refuses it and tears the connection down.
    @Test func aSendIsNeverPlacedIntoAReceiveWhoseRegistrationIsGone() throws {
        let (client, server) = try connectedPair()
        let receiveBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        let sendBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer {
            client.close()
            server.close()
            receiveBuffer.deallocate()
            sendBuffer.deallocate()
        }
        receiveBuffer.initializeMemory(as: UInt8.self, repeating: 0x11)
        sendBuffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        let registration = try server.register(receiveBuffer, access: .localWrite)
        try server.postReceive(registration.wholeSlice, id: 9)
        try server.deregister(registration)
        let sending = try client.register(sendBuffer, access: .localWrite)
        try client.postSend(sending.slice(offset: 0, length: 1024), id: 1, signaled: true)
        let completion = try #require(waitForOne(server))
        #expect(completion.id == 9 && completion.status != .success, "\(completion)")
        #expect(receiveBuffer.allSatisfy { $0 == 0x11 }, "a payload was written into deregistered memory")
        #expect(server.failure != nil)
    }

    /// With encryption on, the sender thread reads payloads itself (to seal them): memory
    /// deregistered and unmapped while WRITEs from it are still queued must never be read —
    /// the fault matrix caught a sender sealing a freed stream ring (SIGSEGV). Here the
    /// memory is unmapped right after deregistering, so a read would crash the test.
    @Test func queuedSealedWritesNeverReadMemoryDeregisteredUnderThem() throws {
        let (client, server) = try connectedPair()
        defer {
            client.close()
            server.close()
        }
        let keys = TransportEncryptionKeys(sendKey: Array(repeating: 1, count: 32), receiveKey: Array(repeating: 2, count: 32))
        #expect(try client.startEncryption(keys))
        #expect(try server.startEncryption(TransportEncryptionKeys(sendKey: keys.receiveKey, receiveKey: keys.sendKey)))
        let size = 64 << 20
        let window = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { window.deallocate() }
        let exported = try server.register(window, access: [.localWrite, .remoteWrite])
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), mapped != MAP_FAILED else {
            Issue.record("mmap failed")
            return
        }
        let source = UnsafeMutableRawBufferPointer(start: mapped, count: size)
        source.initializeMemory(as: UInt8.self, repeating: 0x42)
        let registration = try client.register(source, access: .localWrite)
        let message = 1 << 20
        for index in 0..<64 {
            try client.postWrite(registration.slice(offset: index * message, length: message),
                                 to: exported.window().slice(offset: UInt64(index * message), length: message),
                                 id: UInt64(index), signaled: index == 63)
        }
        try client.deregister(registration)
        munmap(mapped, size)
        // Still alive here: whatever had not been sealed was refused, not read.
        _ = waitForOne(client)
    }

    /// Sealed frames of every size, in both directions at once: each side's receiver thread
    /// acknowledges the peer's frames while its own sender thread seals, and after a large
    /// payload the receiver reads the tag and the next header in one bounded read, so small
    /// frames, zero-length WRITEs and SENDs after large ones are where a misread would show.
    /// Every byte must arrive where it was written, decrypted.
    @Test func sealedFramesOfEverySizeArriveIntactInBothDirectionsAtOnce() throws {
        let (client, server) = try connectedPair()
        defer {
            client.close()
            server.close()
        }
        let keys = TransportEncryptionKeys(sendKey: Array(repeating: 7, count: 32), receiveKey: Array(repeating: 9, count: 32))
        #expect(try client.startEncryption(keys))
        #expect(try server.startEncryption(TransportEncryptionKeys(sendKey: keys.receiveKey, receiveKey: keys.sendKey)))

        let sizes = [1, 100, 4096, 16 << 10, (16 << 10) + 16, 64 << 10, 1 << 20, 3, 200 << 10, 0, 64 << 10, 31, 1 << 20,
                     (16 << 10) - 1, 7, 2 << 20, 48]
        let sendSizes = [3000, 40 << 10, 1, 64 << 10]
        let regionBytes = 16 << 20
        let sides = [(client, UInt64(0x3B)), (server, UInt64(0xC5))].map { connection, seed -> (TCPConnection, UnsafeMutableRawBufferPointer, UnsafeMutableRawBufferPointer) in
            let source = UnsafeMutableRawBufferPointer.allocate(byteCount: regionBytes, alignment: 4096)
            let window = UnsafeMutableRawBufferPointer.allocate(byteCount: regionBytes, alignment: 4096)
            let words = source.bindMemory(to: UInt64.self)
            for index in words.indices { words[index] = UInt64(index) &* 0x9E37_79B9_7F4A_7C15 ^ seed }
            window.initializeMemory(as: UInt8.self, repeating: 0)
            return (connection, source, window)
        }
        defer {
            for (_, source, window) in sides {
                source.deallocate()
                window.deallocate()
            }
        }
        let sources = try sides.map { try $0.0.register($0.1, access: .localWrite) }
        let windows = try sides.map { try $0.0.register($0.2, access: [.localWrite, .remoteWrite]) }
        // SENDs land in the upper half of the receiver's window, WRITEs in the lower half.
        let sendArea = regionBytes / 2
        for side in 0..<2 {
            var offset = 0
            for (index, size) in sendSizes.enumerated() {
                try sides[side].0.postReceive(windows[side].slice(offset: sendArea + offset, length: size), id: 1000 + UInt64(index))
                offset += size
            }
        }
        for side in 0..<2 {
            let connection = sides[side].0
            let peerWindow = windows[1 - side].window()
            var offset = 0
            for (index, size) in sizes.enumerated() {
                try connection.postWrite(sources[side].slice(offset: offset, length: size),
                                         to: peerWindow.slice(offset: UInt64(offset), length: size),
                                         id: UInt64(index), signaled: true, immediate: nil)
                offset += size
            }
            var sendOffset = 0
            for (index, size) in sendSizes.enumerated() {
                try connection.postSend(sources[side].slice(offset: sendArea + sendOffset, length: size), id: 500 + UInt64(index), signaled: true)
                sendOffset += size
            }
        }

        // Each side completes its own WRITEs and SENDs and receives the peer's SENDs.
        let expected = sizes.count + 2 * sendSizes.count
        var done = [0, 0]
        let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 16)
        defer { buffer.deallocate() }
        let deadline = ContinuousClock.now + .seconds(30)
        while done != [expected, expected], ContinuousClock.now < deadline {
            for side in 0..<2 {
                let count = sides[side].0.waitForCompletions(into: buffer, timeout: .milliseconds(10))
                for completion in buffer.prefix(count) {
                    #expect(completion.status == .success, "side \(side): \(completion), failure: \(String(describing: sides[side].0.failure))")
                    done[side] += 1
                }
            }
        }
        #expect(done == [expected, expected], "completions: \(done) of \(expected) each")
        for side in 0..<2 {
            let (_, source, _) = sides[side]
            let peerWindow = sides[1 - side].2
            let written = sizes.reduce(0, +)
            #expect(memcmp(peerWindow.baseAddress!, source.baseAddress!, written) == 0, "WRITEs from side \(side) arrived changed")
            let sent = sendSizes.reduce(0, +)
            #expect(memcmp(peerWindow.baseAddress! + sendArea, source.baseAddress! + sendArea, sent) == 0,
                    "SENDs from side \(side) arrived changed")
        }
    }

    @Test func orderlyCloseIsReportedAsClosedByPeer() throws {
        let (client, server) = try connectedPair()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 64)
        defer {
            server.close()
            buffer.deallocate()
        }
        let registration = try server.register(buffer, access: .localWrite)
        try server.postReceive(registration.wholeSlice, id: 3)
        let clientEndpoint = client.localEndpoint
        client.close()
        #expect(client.failure == .connectionClosed(detail: "closed by this side"))
        let completion = try #require(waitForOne(server))
        #expect(completion == Completion(id: 3, kind: .receive, status: .flushed))
        #expect(server.failure == .peerDisconnected(clientEndpoint, detail: "closed by peer"))
    }

    @Test func peerResetFlushesOutstandingWorkAndNamesECONNRESET() throws {
        let (connection, thread) = try connectionToRawPeer { raw in
            // Wait for the ACK frame carrying the receive credit, so the receive is posted.
            while let header = raw.receiveHeader(), header.kind != .ack || header.address == 0 {}
            raw.reset()
        }
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 64)
        defer {
            thread.join()
            connection.close()
            memory.deallocate()
        }
        let registration = try connection.register(memory, access: .localWrite)
        // The raw peer never grants a receive credit, so this SEND stays queued. It is posted
        // first: the peer resets once it sees the credit ACK that the receive below causes.
        try connection.postSend(registration.slice(offset: 64, length: 8), id: 11, signaled: true)
        try connection.postReceive(registration.slice(offset: 0, length: 64), id: 10)
        let first = try #require(waitForOne(connection))
        let second = try #require(waitForOne(connection))
        // Flushed sends come before flushed receives; either order would be verbs-like.
        #expect([first, second].sorted { $0.id < $1.id } == [Completion(id: 10, kind: .receive, status: .flushed),
                                                             Completion(id: 11, kind: .send, status: .flushed, byteCount: 8)])
        guard case .peerDisconnected(_, let detail)? = connection.failure else {
            Issue.record("after a reset the connection reports \(String(describing: connection.failure))")
            return
        }
        #expect(detail.contains("ECONNRESET"), "\(detail)")
        #expect(throws: TransportError.self) { try connection.postReceive(registration.slice(offset: 0, length: 64), id: 12) }
    }

    @Test func peerThatExitsWithoutCloseIsReportedAsDisconnected() throws {
        let (connection, thread) = try connectionToRawPeer { raw in raw.hangUp() }
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 64)
        defer {
            thread.join()
            connection.close()
            memory.deallocate()
        }
        let registration = try connection.register(memory, access: .localWrite)
        // May race with the hang-up: either posted (then flushed) or refused as closed.
        if try postUnlessClosed({ () throws(TransportError) in try connection.postReceive(registration.wholeSlice, id: 1) }) {
            #expect(waitForOne(connection) == Completion(id: 1, kind: .receive, status: .flushed))
        }
        guard case .peerDisconnected(_, let detail)? = connection.failure else {
            Issue.record("the connection reports \(String(describing: connection.failure))")
            return
        }
        #expect(detail.contains("without a CLOSE frame"), "\(detail)")
    }

    @Test func unknownFrameKindIsAProtocolViolationAndThePeerIsTold() throws {
        let reply = Mutex<(TCPFrameHeader, String)?>(nil)
        let (connection, thread) = try connectionToRawPeer { raw in
            var header = TCPFrameHeader(kind: .close)
            header.kindByte = 0x77
            raw.send(header)
            while let frame = raw.receiveHeader() {
                if frame.kind == .error {
                    let text = String(decoding: raw.receive(Int(frame.length)), as: UTF8.self)
                    reply.withLock { $0 = (frame, text) }
                    break
                }
            }
            raw.shutdownAndClose()
        }
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 64)
        defer {
            connection.close()
            memory.deallocate()
        }
        let registration = try connection.register(memory, access: .localWrite)
        if try postUnlessClosed({ () throws(TransportError) in try connection.postSend(registration.wholeSlice, id: 1, signaled: true) }) {
            #expect(waitForOne(connection) == Completion(id: 1, kind: .send, status: .flushed, byteCount: 64))
        }
        thread.join()
        guard case .protocolViolation(let detail)? = connection.failure else {
            Issue.record("the connection reports \(String(describing: connection.failure))")
            return
        }
        #expect(detail.contains("unknown kind 119"), "\(detail)")
        let (frame, text) = try #require(reply.withLock { $0 })
        #expect(frame.key == TCPFrameHeader.ErrorCode.protocolViolation.rawValue && text.contains("unknown kind 119"))
    }

    @Test func sendWithoutAReceiveCreditIsAProtocolViolation() throws {
        let (connection, thread) = try connectionToRawPeer { raw in
            raw.send(TCPFrameHeader(kind: .send, length: 4, sequence: 1), payload: [1, 2, 3, 4])
            while let frame = raw.receiveHeader(), frame.kind != .error {}
            raw.shutdownAndClose()
        }
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 64)
        defer {
            thread.join()
            connection.close()
            memory.deallocate()
        }
        let registration = try connection.register(memory, access: .localWrite)
        if try postUnlessClosed({ () throws(TransportError) in try connection.postSend(registration.wholeSlice, id: 1, signaled: true) }) {
            #expect(waitForOne(connection) == Completion(id: 1, kind: .send, status: .flushed, byteCount: 64))
        }
        guard case .protocolViolation(let detail)? = connection.failure else {
            Issue.record("the connection reports \(String(describing: connection.failure))")
            return
        }
        #expect(detail.contains("none was posted"), "\(detail)")
    }

    @Test func workRequestsNamingUnregisteredMemoryAreRejectedAtPost() throws {
        var options = TransportOptions()
        options.maxSendBytes = 128
        let (client, server) = try connectedPair(options)
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer {
            client.close()
            server.close()
            memory.deallocate()
        }
        let readOnly = try client.register(UnsafeMutableRawBufferPointer(rebasing: memory[0..<1024]), access: [])
        let writable = try client.register(UnsafeMutableRawBufferPointer(rebasing: memory[1024..<2048]), access: .localWrite)
        let window = RemoteWindow(address: 0x1000, length: 4096, remoteKey: 1)
        let isInvalid: (TransportError) -> Bool = { if case .invalidWorkRequest = $0 { return true }; return false }
        func expectInvalid(_ body: () throws -> Void) {
            do {
                try body()
                Issue.record("an invalid work request was accepted")
            } catch let error as TransportError {
                #expect(isInvalid(error), "\(error)")
            } catch {
                Issue.record("unexpected \(error)")
            }
        }
        expectInvalid { try client.postWrite(LocalSlice(address: writable.address, length: 8, localKey: writable.localKey ^ 0x400),
                                             to: window.slice(offset: 0, length: 8), id: 1, signaled: true) }
        expectInvalid { try client.postWrite(LocalSlice(address: writable.address + 1000, length: 100, localKey: writable.localKey),
                                             to: window.slice(offset: 0, length: 100), id: 1, signaled: true) }
        expectInvalid { try client.postReceive(readOnly.slice(offset: 0, length: 64), id: 1) }
        expectInvalid { try client.postSend(writable.slice(offset: 0, length: 129), id: 1, signaled: true) }
        #expect(throws: TransportError.self) { try client.register(UnsafeMutableRawBufferPointer(start: nil, count: 0), access: .localWrite) }
        try client.deregister(writable)
        expectInvalid { try client.postSend(writable.slice(offset: 0, length: 8), id: 1, signaled: true) }
        expectInvalid { try client.deregister(writable) }
        #expect(client.failure == nil, "rejected posts leave the connection working")
    }

    @Test func ioThreadsArePinnedToTheGivenCPUs() throws {
        let cpu = try #require(try SystemThread.currentAffinity().last)
        var options = TransportOptions()
        options.threadCPUs = [cpu]
        let (client, server) = try connectedPair(options)
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 64)
        defer {
            client.close()
            server.close()
            memory.deallocate()
        }
        // Threads pin themselves as they start; a write and its ACK show that all four ran.
        let source = try client.register(UnsafeMutableRawBufferPointer(rebasing: memory[0..<64]), access: .localWrite)
        let target = try server.register(UnsafeMutableRawBufferPointer(rebasing: memory[64..<128]), access: [.localWrite, .remoteWrite])
        try client.postWrite(source.wholeSlice, to: target.window().slice(offset: 0, length: 64), id: 1, signaled: true)
        #expect(waitForOne(client)?.status == .success)
        // Other tests' connections run unpinned threads with the same names at the same time.
        var pinned = 0
        let tasks = try #require(opendir("/proc/self/task"))
        defer { closedir(tasks) }
        while let entry = readdir(tasks) {
            let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            guard let name = readFile("/proc/self/task/\(tid)/comm"), name.hasPrefix("rdmig-tcp-"),
                  let status = readFile("/proc/self/task/\(tid)/status") else { continue }
            let allowed = status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
            if allowed?.split(separator: "\t").last.map(String.init) == "\(cpu)" { pinned += 1 }
        }
        let cpuCount = try SystemThread.currentAffinity().count
        // With a single CPU every thread trivially runs there; the count still must reach 4.
        #expect(pinned >= 4, "found \(pinned) rdmig-tcp threads pinned to CPU \(cpu) of \(cpuCount)")
    }

    @Test func busyPollingFindsCompletionsAndHonoursItsTimeout() throws {
        var options = TransportOptions()
        options.completionMode = .busyPoll
        let (client, server) = try connectedPair(options)
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 4096)
        defer {
            client.close()
            server.close()
            memory.deallocate()
        }
        let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 4)
        defer { buffer.deallocate() }
        #expect(client.waitForCompletions(into: buffer, timeout: .milliseconds(2)) == 0)
        let source = try client.register(UnsafeMutableRawBufferPointer(rebasing: memory[0..<4096]), access: .localWrite)
        let target = try server.register(UnsafeMutableRawBufferPointer(rebasing: memory[4096..<8192]), access: [.localWrite, .remoteWrite])
        memory.storeBytes(of: 0xABCD_EF01_2345_6789 as UInt64, toByteOffset: 0, as: UInt64.self)
        try client.postWrite(source.wholeSlice, to: target.window().slice(offset: 0, length: 4096), id: 5, signaled: true)
        #expect(client.waitForCompletions(into: buffer, timeout: .seconds(5)) == 1)
        #expect(buffer[0] == Completion(id: 5, kind: .write, status: .success, byteCount: 4096))
        #expect(memory.load(fromByteOffset: 4096, as: UInt64.self) == 0xABCD_EF01_2345_6789)
    }
}

private func readFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = fread(&chunk, 1, chunk.count, file)
        if count <= 0 { break }
        bytes += chunk.prefix(count)
    }
    return String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: "\n")
}

private extension String {
    func trimmingCharacters(in character: Character) -> String {
        var text = Substring(self)
        while text.last == character { text = text.dropLast() }
        return String(text)
    }
}
