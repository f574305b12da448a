#if canImport(Glibc)
import Glibc
#endif
import RdmigQEMU
import RdmigSystem

/// The destination's relay dying mid-stream, as a killed `rdmig dest` would: it delivers
/// `limit` bytes of the loopback relay's stream to QEMU, then stops reading and fails, which
/// breaks the loopback wire under the source's relay too.
struct DyingIncomingRelay: QEMUIncomingStreamRelay {
    let inner: LoopbackStreamRelay
    let limit: UInt64

    struct Died: Error, CustomStringConvertible {
        let after: UInt64
        var description: String { "the destination relay died after delivering \(after) bytes (test fault)" }
    }

    func relayIncoming(to fd: Int32) async throws -> QEMURelayStatistics {
        var middle: [Int32] = [-1, -1]
        try SystemCall.check("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &middle) }
        let (innerEnd, ourEnd) = (middle[0], middle[1])
        let inner = self.inner
        let forwarding = Task { try await inner.relayIncoming(to: innerEnd) }
        let limit = self.limit
        let copied = try await DedicatedThread.run(name: "dying-relay") { () -> UInt64 in
            var total: UInt64 = 0
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while total < limit {
                let count = read(ourEnd, &chunk, Int(min(UInt64(chunk.count), limit - total)))
                if count <= 0 { break }
                var offset = 0
                while offset < count {
                    let sent = chunk.withUnsafeBytes { send(fd, $0.baseAddress! + offset, count - offset, Int32(MSG_NOSIGNAL)) }
                    if sent <= 0 { return total }
                    offset += sent
                }
                total += UInt64(count)
            }
            return total
        }
        // Stop reading like a dead process: the loopback's receiving half, blocked writing
        // to us, fails, and breaks the wire under the source's relay.
        shutdown(ourEnd, Int32(SHUT_RDWR))
        forwarding.cancel()
        _ = await forwarding.result
        close(innerEnd)
        close(ourEnd)
        throw Died(after: copied)
    }
}
