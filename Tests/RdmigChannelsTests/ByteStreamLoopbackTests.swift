#if canImport(Glibc)
import Glibc
#endif
@testable import RdmigChannels
import RdmigSystem
import RdmigTransport
import Testing

/// A stream set up the way rdmig does it: the receiver opens its ring and sends STREAM_RING on
/// the control channel; the sender opens its end from that.
struct StreamEnds {
    let sender: ByteStreamSender
    let receiver: ByteStreamReceiver

    init(_ peers: LoopbackPeers, channel: ChannelID = .deviceState, slotCount: Int, slotSize: Int) throws {
        receiver = try ByteStreamReceiver(router: peers.destinationRouter, channel: channel,
                                          configuration: .init(slotCount: slotCount, slotSize: slotSize))
        try peers.destinationControl.send(MigrationMessage.streamRing(receiver.ring))
        guard case .streamRing(let ring) = try peers.sourceControl.receive(timeout: .seconds(5)) else {
            throw ChannelError.protocolViolation(detail: "expected STREAM_RING")
        }
        sender = try ByteStreamSender(router: peers.sourceRouter, ring: ring)
    }
}

@Suite(.serialized) struct ByteStreamOverTCP {
    let pattern = StreamPattern()

    /// Writes `total` pattern bytes in chunks cycling through `chunkSizes`, then finishes.
    static func writePattern(_ pattern: StreamPattern, _ sender: ByteStreamSender, total: Int, chunkSizes: [Int]) throws {
        var offset = 0
        var chunk = 0
        while offset < total {
            let count = min(total - offset, chunkSizes[chunk % chunkSizes.count], StreamPattern.period)
            try sender.write(pattern.slice(at: UInt64(offset), count: count), timeout: .seconds(20))
            offset += count
            chunk += 1
        }
        try sender.finish(timeout: .seconds(20))
    }

    /// Reads until the end in chunks cycling through `chunkSizes`, checking every byte against
    /// the pattern at its offset; returns the bytes read.
    static func readPattern(_ pattern: StreamPattern, _ receiver: ByteStreamReceiver, chunkSizes: [Int],
                            pause: (Int) -> Void = { _ in }) throws -> UInt64 {
        let buffer = TestMemory(count: chunkSizes.max()!)
        var offset: UInt64 = 0
        var chunk = 0
        while true {
            let want = chunkSizes[chunk % chunkSizes.count]
            let count = try receiver.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer.bytes[..<want]), timeout: .seconds(20))
            if count == 0 { return offset }
            guard pattern.matches(UnsafeRawBufferPointer(rebasing: buffer.bytes[..<count]), at: offset) else {
                throw ChannelError.protocolViolation(detail: "stream bytes \(offset)..<\(offset + UInt64(count)) differ from what was written")
            }
            offset += UInt64(count)
            pause(chunk)
            chunk += 1
        }
    }

    @Test func sixtyFourMebibytesArriveExactlyAndInOrderThroughAnEightSlotRing() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let ends = try StreamEnds(peers, slotCount: 8, slotSize: 64 * 1024)
        let total = 64 << 20
        let reader = try Background("test-stream-read") { [pattern] () -> UInt64 in
            try ByteStreamOverTCP.readPattern(pattern, ends.receiver, chunkSizes: [100_003, 4096, 65_536, 7])
        }
        try Self.writePattern(pattern, ends.sender, total: total, chunkSizes: [1_000_000, 1, 65_536, 12_345])
        #expect(try reader.join() == UInt64(total))
        #expect(ends.sender.bytesSent == UInt64(total))
        #expect(ends.receiver.bytesReceived == UInt64(total))
        #expect(ends.receiver.isAtEnd)
        // Full slots except where a write ended the stream: 64 MiB / 64 KiB = 1024.
        #expect(ends.sender.slotsSent == 1024)
    }

    @Test func aSlowReaderHoldsTheSenderBackAndLosesNothing() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let ends = try StreamEnds(peers, slotCount: 4, slotSize: 4096)
        let total = 1 << 20
        let reader = try Background("test-stream-slow") { [pattern] () -> UInt64 in
            try ByteStreamOverTCP.readPattern(pattern, ends.receiver, chunkSizes: [3000]) { chunk in
                if chunk % 16 == 0 { usleep(2000) }
            }
        }
        try Self.writePattern(pattern, ends.sender, total: total, chunkSizes: [50_000])
        #expect(try reader.join() == UInt64(total))
        // The ring holds 16 KiB; a 1 MiB stream can only pass if credits came back many times.
        #expect(ends.sender.creditWaits > 0)
    }

    @Test func theStreamRelaysFromOneDescriptorToAnotherAndFlushesATrickle() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let ends = try StreamEnds(peers, channel: .qemuStream, slotCount: 8, slotSize: 64 * 1024)
        var input: [Int32] = [0, 0]
        var output: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &input) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &output) == 0)
        defer { for fd in input + output { close(fd) } }
        let (inputWrite, inputRead, outputWrite, outputRead) = (input[0], input[1], output[0], output[1])
        let total = 8 << 20
        let pattern = self.pattern

        // Whatever happens, each relay shuts its descriptor when it stops, so a failure shows as
        // an error or a short count instead of a test that hangs on a read.
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        #expect(setsockopt(outputRead, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size)) == 0)
        let relayOut = try Background("test-relay-out") { () -> UInt64 in
            defer { shutdown(outputWrite, Int32(SHUT_WR)) }
            return try ends.receiver.relay(toFileDescriptor: outputWrite, idleTimeout: .seconds(20))
        }
        let relayIn = try Background("test-relay-in") { () -> UInt64 in
            defer { shutdown(inputRead, Int32(SHUT_RDWR)) }
            let relayed = try ends.sender.relay(fromFileDescriptor: inputRead, idleTimeout: .seconds(20))
            try ends.sender.finish(timeout: .seconds(20))
            return relayed
        }
        // A trickle of 10 bytes must come out without more input behind it.
        #expect(send(inputWrite, pattern.slice(at: 0, count: 10).baseAddress, 10, Int32(MSG_NOSIGNAL)) == 10)
        let head = TestMemory(count: 10)
        var got = 0
        while got < 10 {
            let count = read(outputRead, head.bytes.baseAddress! + got, 10 - got)
            #expect(count > 0)
            if count <= 0 { break }
            got += count
        }
        #expect(pattern.matches(UnsafeRawBufferPointer(head.bytes), at: 0))

        let writer = try Background("test-fd-writer") { () -> Void in
            var offset = 10
            while offset < total {
                let count = min(total - offset, 200_000)
                let chunk = pattern.slice(at: UInt64(offset), count: count)
                var done = 0
                while done < count {
                    let written = send(inputWrite, chunk.baseAddress! + done, count - done, Int32(MSG_NOSIGNAL))
                    if written <= 0 { throw SystemCallError(call: "write", errno: SystemCall.currentErrno()) }
                    done += written
                }
                offset += count
            }
            shutdown(inputWrite, Int32(SHUT_WR))
        }
        let buffer = TestMemory(count: 1 << 20)
        var offset: UInt64 = 10
        while true {
            let count = read(outputRead, buffer.bytes.baseAddress!, buffer.bytes.count)
            if count <= 0 { break }
            #expect(pattern.matches(UnsafeRawBufferPointer(rebasing: buffer.bytes[..<count]), at: offset))
            offset += UInt64(count)
            if offset == UInt64(total) { break }
        }
        try writer.join()
        #expect(try relayIn.join() == UInt64(total))
        #expect(try relayOut.join() == UInt64(total))
        #expect(offset == UInt64(total))
    }

    /// A pipe whose write end is non-blocking, as QEMU mode makes it.
    static func relayPipe() throws -> (read: Int32, write: Int32) {
        try PipeCalls.makePipe(nonBlockingWriteEnd: true)
    }

    @Test func slotsHandedToAPipeKeepTheirCreditUntilThePipesReaderTookThem() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let ends = try StreamEnds(peers, channel: .qemuStream, slotCount: 4, slotSize: 4096)
        let pipe = try Self.relayPipe()
        defer { close(pipe.read); close(pipe.write) }
        let total = 2 << 20
        let writer = try Background("test-pipe-writer") { [pattern] () -> Void in
            try ByteStreamOverTCP.writePattern(pattern, ends.sender, total: total, chunkSizes: [10_000])
        }
        let relay = try Background("test-pipe-relay") { () -> UInt64 in
            try ends.receiver.relay(toPipe: pipe.write, idleTimeout: .seconds(20))
        }
        // Nobody reads the pipe yet. It has room for 64 KiB, but the ring's 4 slots of 4 KiB
        // are all the sender may write: a slot's credit waits for the pipe's reader.
        usleep(300_000)
        #expect(ends.sender.bytesSent <= 4 * 4096)
        #expect(ends.receiver.bytesReceived == 4 * 4096)
        #expect(try PipeCalls.unread(pipe.write) == 4 * 4096)

        // Now read slowly, in pieces that split pipe buffers: had a slot been credited before
        // the reader took it, the sender would have overwritten pages the pipe still refers
        // to, and the pattern would break.
        let buffer = TestMemory(count: 3000)
        var offset: UInt64 = 0
        var pieces = 0
        while offset < UInt64(total) {
            let count = read(pipe.read, buffer.bytes.baseAddress!, buffer.bytes.count)
            guard count > 0 else { break }
            guard pattern.matches(UnsafeRawBufferPointer(rebasing: buffer.bytes[..<count]), at: offset) else {
                Issue.record("pipe bytes \(offset)..<\(offset + UInt64(count)) differ from what was written")
                break
            }
            offset += UInt64(count)
            pieces += 1
            if pieces % 64 == 0 { usleep(1000) }
        }
        try writer.join()
        #expect(try relay.join() == UInt64(total))
        #expect(offset == UInt64(total))
        #expect(ends.sender.creditWaits > 0)
        #expect(ends.receiver.isAtEnd)
    }

    @Test func aPipeRelayWaitsForItsReaderBeforeTheRingMayGo() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let ends = try StreamEnds(peers, channel: .qemuStream, slotCount: 4, slotSize: 4096)
        let pipe = try Self.relayPipe()
        defer { close(pipe.read); close(pipe.write) }
        try ends.sender.write(pattern.slice(at: 0, count: 5000), timeout: .seconds(5))
        try ends.sender.finish(timeout: .seconds(5))
        var total = 0
        while true {
            let count = try ends.receiver.splice(toPipe: pipe.write, timeout: .seconds(5))
            if count == 0 { break }
            total += count
        }
        #expect(total == 5000)
        // The bytes sit in the pipe by reference: the wait must not end before they are read.
        let error = #expect(throws: ChannelError.self) {
            try ends.receiver.waitForPipeReader(pipe.write, timeout: .milliseconds(50))
        }
        guard case .timedOut? = error else {
            Issue.record("expected timedOut, got \(String(describing: error))")
            return
        }
        let buffer = TestMemory(count: 8192)
        #expect(read(pipe.read, buffer.bytes.baseAddress!, 8192) == 5000)
        #expect(pattern.matches(UnsafeRawBufferPointer(rebasing: buffer.bytes[..<5000]), at: 0))
        try ends.receiver.waitForPipeReader(pipe.write, timeout: .seconds(1))
        // A reader that went away will never take the bytes: that ends the wait too.
        let second = try StreamEnds(peers, channel: .deviceState, slotCount: 2, slotSize: 4096)
        let gone = try Self.relayPipe()
        defer { close(gone.write) }
        try second.sender.write(pattern.slice(at: 0, count: 100), timeout: .seconds(5))
        try second.sender.flush(timeout: .seconds(5))
        #expect(try second.receiver.splice(toPipe: gone.write, timeout: .seconds(5)) == 100)
        close(gone.read)
        try second.receiver.waitForPipeReader(gone.write, timeout: .seconds(1))
    }

    @Test func aReaderThatClosesStopsTheSender() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let ends = try StreamEnds(peers, slotCount: 2, slotSize: 4096)
        ends.receiver.close()
        let chunk = pattern.slice(at: 0, count: 4096)
        let error = #expect(throws: ChannelError.self) {
            for _ in 0..<100 { try ends.sender.write(chunk, timeout: .seconds(5)) }
        }
        guard case .peerClosed? = error else {
            Issue.record("expected peerClosed, got \(String(describing: error))")
            return
        }
    }

    @Test func aVanishedReceiverFailsABlockedSenderAndAVanishedSenderFailsABlockedReader() throws {
        // The sender blocks on credit (nobody reads); then the receiving side disappears.
        do {
            let peers = try LoopbackPeers()
            defer { peers.close() }
            let ends = try StreamEnds(peers, slotCount: 2, slotSize: 4096)
            let writer = try Background("test-blocked-writer") { [pattern] () -> ChannelError? in
                do {
                    for _ in 0..<100 { try ends.sender.write(pattern.slice(at: 0, count: 4096), timeout: .seconds(20)) }
                    return nil
                } catch let error as ChannelError {
                    return error
                }
            }
            usleep(200_000)
            peers.destination.close()
            guard case .transport? = try writer.join() else {
                Issue.record("a blocked sender did not fail with a transport error")
                return
            }
        }
        // The reader blocks waiting for data; then the sending side disappears.
        do {
            let peers = try LoopbackPeers()
            defer { peers.close() }
            let ends = try StreamEnds(peers, slotCount: 2, slotSize: 4096)
            try ends.sender.write(pattern.slice(at: 0, count: 100), timeout: .seconds(5))
            try ends.sender.flush(timeout: .seconds(5))
            let reader = try Background("test-blocked-reader") { () -> (UInt64, ChannelError?) in
                let buffer = TestMemory(count: 4096)
                var total: UInt64 = 0
                do {
                    while true {
                        let count = try ends.receiver.read(into: buffer.bytes, timeout: .seconds(20))
                        if count == 0 { return (total, nil) }
                        total += UInt64(count)
                    }
                } catch let error as ChannelError {
                    return (total, error)
                }
            }
            usleep(200_000)
            peers.source.close()
            let (received, error) = try reader.join()
            // What arrived before the peer vanished is still read, then the failure is reported.
            #expect(received == 100)
            guard case .transport(.peerDisconnected)? = error else {
                Issue.record("a blocked reader got \(String(describing: error)), not peerDisconnected")
                return
            }
        }
    }

    @Test func aRingNeedingMoreReceivesThanTheConnectionHasIsRefused() throws {
        let peers = try LoopbackPeers()
        defer { peers.close() }
        let error = #expect(throws: ChannelError.self) {
            _ = try ByteStreamReceiver(router: peers.destinationRouter, channel: .deviceState,
                                       configuration: .init(slotCount: 100, slotSize: 4096))
        }
        guard case .resourcesExhausted(let detail)? = error else {
            Issue.record("expected resourcesExhausted, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("receiveCount"))
    }
}
