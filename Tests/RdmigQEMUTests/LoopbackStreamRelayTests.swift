#if canImport(Glibc)
import Glibc
#endif
import RdmigQEMU
import RdmigSystem
import Testing

@Suite("Loopback stream relay")
struct LoopbackStreamRelayTests {
    /// Two socket pairs stand for the two QEMUs' channels.
    final class Ends: Sendable {
        let sourceQEMU: Int32, sourceRelay: Int32, destinationQEMU: Int32, destinationRelay: Int32
        init() {
            var a: [Int32] = [-1, -1], b: [Int32] = [-1, -1]
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &a)
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &b)
            (sourceQEMU, sourceRelay, destinationQEMU, destinationRelay) = (a[0], a[1], b[0], b[1])
        }
        deinit { [sourceQEMU, sourceRelay, destinationQEMU, destinationRelay].forEach { close($0) } }
    }

    @Test func everyByteArrivesInOrderAndTheEndOfStreamPassesThrough() async throws {
        let ends = Ends()
        let relay = try LoopbackStreamRelay(chunkSize: 4096)
        let pattern = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
        async let outgoing = relay.relayOutgoing(from: ends.sourceRelay)
        async let incoming = relay.relayIncoming(to: ends.destinationRelay)
        let writer = Task {
            try await DedicatedThread.run(name: "test-writer") {
                var offset = 0
                while offset < pattern.count {
                    let sent = pattern.withUnsafeBytes { write(ends.sourceQEMU, $0.baseAddress! + offset, $0.count - offset) }
                    if sent <= 0 { throw SystemCallError(call: "write", errno: errno) }
                    offset += sent
                }
                shutdown(ends.sourceQEMU, Int32(SHUT_WR))
            }
        }
        let received = try await DedicatedThread.run(name: "test-reader") { () -> [UInt8] in
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = read(ends.destinationQEMU, &chunk, chunk.count)
                if count <= 0 { return bytes }
                bytes += chunk[..<count]
            }
        }
        try await writer.value
        let (sent, delivered) = try await (outgoing, incoming)
        #expect(received == pattern)
        #expect(sent.bytes == UInt64(pattern.count))
        #expect(delivered.bytes == UInt64(pattern.count))
    }

    @Test func aSenderThatIsCancelledMidStreamIsABrokenStreamForTheReceiver() async throws {
        let ends = Ends()
        let relay = try LoopbackStreamRelay()
        let outgoing = Task { try await relay.relayOutgoing(from: ends.sourceRelay) }
        let incoming = Task { try await relay.relayIncoming(to: ends.destinationRelay) }
        let written = "partial".withCString { write(ends.sourceQEMU, $0, 7) }
        #expect(written == 7)
        var partial = [UInt8](repeating: 0, count: 7)
        #expect(read(ends.destinationQEMU, &partial, 7) == 7)
        outgoing.cancel()
        shutdown(ends.sourceRelay, Int32(SHUT_RDWR))  // what the driver does: wakes the blocked read
        await #expect(throws: (any Error).self) { _ = try await outgoing.value }
        let error = await #expect(throws: LoopbackStreamRelayError.self) { _ = try await incoming.value }
        #expect(error == .senderFailed(bytesDelivered: 7))
    }
}
