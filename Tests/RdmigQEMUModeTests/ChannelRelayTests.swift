#if canImport(Glibc)
import RdmigTestSupport
import Glibc
#endif
import RdmigChannels
import RdmigQEMU
@testable import RdmigQEMUMode
import RdmigSystem
import RdmigTransport
import Testing

/// QEMU mode's relays and probe without QEMU: socket pairs stand in for QEMU's migration
/// sockets, and the byte-stream channel runs over the tcp backend on loopback.
@Suite("QEMU mode relays over a loopback channel (no QEMU needed)", .serialized)
struct ChannelRelayTests {
    /// Two routers on a loopback tcp connection.
    final class Peers: @unchecked Sendable {
        let source: any TransportConnection
        let destination: any TransportConnection
        let sourceRouter: CompletionRouter
        let destinationRouter: CompletionRouter

        /// Synchronous on purpose, with the peer's half on a system thread: an `async let` child
        /// needs a free cooperative thread to start, and on 2 cores the blocking tests of other
        /// suites can hold both, so the accept never ran and the connect timed out (seen in CI).
        init() throws {
            let listener = try TCPTransport().listen(on: TransportEndpoint(host: "127.0.0.1", port: 0), options: TransportOptions())
            defer { listener.close() }
            let accepted = ResultBox<any TransportConnection>()
            let acceptor = try SystemThread(name: "test-accept") {
                accepted.set(Result { try listener.accept(timeout: .seconds(30)) })
            }
            let connected = Result { try TCPTransport().connect(to: listener.localEndpoint, options: TransportOptions()) }
            acceptor.join()
            let source = try connected.get()
            let destination = try accepted.get()
            self.source = source
            self.destination = destination
            let router = ResultBox<CompletionRouter>()
            let routerThread = try SystemThread(name: "test-router") {
                router.set(Result { try CompletionRouter(connection: destination, configuration: .init()) })
            }
            let sourceRouter = Result { try CompletionRouter(connection: source, configuration: .init()) }
            routerThread.join()
            self.sourceRouter = try sourceRouter.get()
            destinationRouter = try router.get()
        }

        func close() {
            sourceRouter.close()
            destinationRouter.close()
            source.close()
            destination.close()
        }
    }

    static func socketPair() throws -> (Int32, Int32) {
        var ends: [Int32] = [-1, -1]
        try SystemCall.check("socketpair", context: "test") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &ends) }
        return (ends[0], ends[1])
    }

    static func pattern(_ index: Int) -> UInt8 { UInt8(truncatingIfNeeded: index &* 31 &+ index >> 9) }

    /// The destination QEMU's end as rdmig makes it for this relay: a pipe, its write end
    /// non-blocking (the stream's pages are vmspliced into it).
    static func pipe() throws -> (Int32, Int32) {
        let ends = try PipeCalls.makePipe(nonBlockingWriteEnd: true)
        return (ends.write, ends.read)
    }

    @Test(arguments: [false, true])
    func aStreamRelayedThroughTheChannelArrivesWholeAndInOrder(destinationPipe: Bool) async throws {
        let peers = try Peers()
        defer { peers.close() }
        let receiver = try ByteStreamReceiver(router: peers.destinationRouter, channel: .qemuStream, configuration: QEMUModeSource.streamConfiguration)
        let sender = try ByteStreamSender(router: peers.sourceRouter, ring: receiver.ring)
        let (qemuOut, relayIn) = try Self.socketPair()
        let (relayOut, qemuIn) = destinationPipe ? try Self.pipe() : try Self.socketPair()
        #expect(ChannelIncomingRelay.isPipe(relayOut) == destinationPipe)
        defer { [qemuOut, relayIn, relayOut, qemuIn].forEach { close($0) } }
        let total = 24 << 20 + 12_345  // not a multiple of the slot size: the last slot is partial

        // "Source QEMU": writes the stream and closes its end (end of file for the relay).
        async let written: Void = DedicatedThread.run(name: "test-qemu-out") {
            var buffer = [UInt8](repeating: 0, count: 100_000)
            var offset = 0
            while offset < total {
                let count = min(buffer.count, total - offset)
                for index in 0..<count { buffer[index] = Self.pattern(offset + index) }
                var done = 0
                while done < count {
                    let result = buffer.withUnsafeBytes { write(qemuOut, $0.baseAddress! + done, count - done) }
                    try SystemCall.check("write", context: "test") { Int32(result < 0 ? -1 : 0) }
                    done += result
                }
                offset += count
            }
            shutdown(qemuOut, Int32(SHUT_WR))
        }
        // "Destination QEMU": reads exactly `total` bytes and checks each.
        async let mismatches: Int = DedicatedThread.run(name: "test-qemu-in") {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            var offset = 0
            var wrong = 0
            while offset < total {
                let count = buffer.withUnsafeMutableBytes { read(qemuIn, $0.baseAddress!, min($0.count, total - offset)) }
                guard count > 0 else { break }
                for index in 0..<count where buffer[index] != Self.pattern(offset + index) { wrong += 1 }
                offset += count
            }
            return offset == total ? wrong : -1
        }
        async let outgoing = ChannelOutgoingRelay(sender: sender, creditTimeout: .seconds(10)).relayOutgoing(from: relayIn)
        async let incoming = ChannelIncomingRelay(receiver: receiver, idleTimeout: .seconds(10)).relayIncoming(to: relayOut)
        try await written
        let (sent, received, wrong) = try await (outgoing, incoming, mismatches)
        #expect(sent.bytes == UInt64(total))
        // Every slot travelled once: at least total / slot size of them, at most one per read.
        let slotSize = UInt64(QEMUModeSource.streamConfiguration.slotSize)
        #expect(sent.chunks >= (UInt64(total) + slotSize - 1) / slotSize)
        #expect(sent.chunks <= UInt64(total))
        #expect(sent.description.contains("\(sent.chunks) chunks"))
        #expect(received.bytes == UInt64(total))
        #expect(wrong == 0, "\(wrong) bytes differ (-1: the stream ended early)")
        // Both relays say what the process spent while they ran (moving megabytes costs CPU).
        #expect((sent.cpuTime ?? .zero) > .zero && (received.cpuTime ?? .zero) > .zero)
        #expect(sent.description.contains(", CPU "))
    }

    @Test func aCancelledIncomingRelayStopsPromptlyWhileTheSourceIsSilent() async throws {
        let peers = try Peers()
        defer { peers.close() }
        let receiver = try ByteStreamReceiver(router: peers.destinationRouter, channel: .qemuStream, configuration: QEMUModeSource.streamConfiguration)
        let (relayOut, qemuIn) = try Self.socketPair()
        defer { close(relayOut); close(qemuIn) }
        let relay = ChannelIncomingRelay(receiver: receiver, idleTimeout: .seconds(60))
        let task = Task { try await relay.relayIncoming(to: relayOut) }
        try await Task.sleep(for: .milliseconds(300))
        let cancelled = ContinuousClock.now
        task.cancel()
        await #expect(throws: RelayStopped.self) { try await task.value }
        // Within a wait slice (250 ms) or so, not the 60 s idle timeout.
        #expect(ContinuousClock.now - cancelled < .seconds(2))
    }

    @Test func aCancelledPipeRelayStopsPromptlyWhileTheDestinationQEMUReadsNothing() async throws {
        let peers = try Peers()
        defer { peers.close() }
        let receiver = try ByteStreamReceiver(router: peers.destinationRouter, channel: .qemuStream, configuration: QEMUModeSource.streamConfiguration)
        let sender = try ByteStreamSender(router: peers.sourceRouter, ring: receiver.ring)
        let (relayOut, qemuIn) = try Self.pipe()
        defer { close(relayOut); close(qemuIn) }
        // More than the pipe and the ring hold together: the relay ends up waiting on a full pipe.
        let writer = Task {
            try await DedicatedThread.run(name: "test-writer") {
                let chunk = [UInt8](repeating: 7, count: 1 << 20)
                for _ in 0..<16 { try chunk.withUnsafeBytes { bytes in try sender.write(bytes, timeout: .seconds(5)) } }
            }
        }
        let relay = ChannelIncomingRelay(receiver: receiver, idleTimeout: .seconds(60))
        let task = Task { try await relay.relayIncoming(to: relayOut) }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try PipeCalls.unread(relayOut) > 0)
        let cancelled = ContinuousClock.now
        task.cancel()
        await #expect(throws: RelayStopped.self) { try await task.value }
        #expect(ContinuousClock.now - cancelled < .seconds(2))
        // The sender ran out of credit: nothing was read, so nothing was granted past the ring.
        await #expect(throws: ChannelError.self) { try await writer.value }
    }

    @Test func theBandwidthProbeMeasuresWhatTheReceiverDrained() async throws {
        let peers = try Peers()
        defer { peers.close() }
        let receiver = try ByteStreamReceiver(router: peers.destinationRouter, channel: .bandwidthProbe, configuration: QEMUModeSource.probeConfiguration)
        let sender = try ByteStreamSender(router: peers.sourceRouter, ring: receiver.ring)
        async let drained = DedicatedThread.run(name: "test-drain") { try BandwidthProbe.drain(receiver, timeout: .seconds(10)) }
        let measurement = try await DedicatedThread.run(name: "test-probe") {
            try BandwidthProbe.send(over: sender, maxBytes: 32 << 20, maxDuration: .seconds(5), timeout: .seconds(10))
        }
        #expect(try await drained == measurement.bytes)
        #expect(measurement.bytes > 0 && measurement.bytes <= 32 << 20)
        #expect(measurement.bandwidth.bytesPerSecond > 0)
    }
}

/// A result handed from a system thread to the test that joined it.
final class ResultBox<Value>: @unchecked Sendable {
    private var result: Result<Value, any Error>?
    func set(_ value: Result<Value, any Error>) { result = value }
    func get() throws -> Value {
        guard let result else { throw ProcessFailure("the thread ended without a result") }
        return try result.get()
    }
}
