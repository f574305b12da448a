#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// Both relays in one process, joined by a local socket pair instead of rdmig's transport:
/// QEMU → `relayOutgoing` → wire → `relayIncoming` → QEMU. It lets the whole QEMU-to-QEMU
/// path (getfd, fd: URIs, events, pre-switchover, cancel) run without a network, and fails
/// the way a real transport does: when the sending half dies, the receiving half reports the
/// broken stream instead of a clean end. One instance carries one migration.
public final class LoopbackStreamRelay: QEMUOutgoingStreamRelay, QEMUIncomingStreamRelay {
    private let wireIn: Int32
    private let wireOut: Int32
    private let senderFailed = Atomic<Bool>(false)
    private let outgoingCancelled = Atomic<Bool>(false)
    private let incomingCancelled = Atomic<Bool>(false)
    /// Bytes moved per read(2).
    public let chunkSize: Int

    public init(chunkSize: Int = 1 << 20) throws(SystemCallError) {
        var ends: [Int32] = [-1, -1]
        try SystemCall.check("socketpair", context: "loopback stream relay") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends)
        }
        wireIn = ends[0]
        wireOut = ends[1]
        self.chunkSize = max(4096, chunkSize)
    }

    deinit {
        close(wireIn)
        close(wireOut)
    }

    public func relayOutgoing(from fd: Int32) async throws -> QEMURelayStatistics {
        try await withTaskCancellationHandler {
            try await DedicatedThread.run(name: "loopback-out") { [self] in
                do {
                    let statistics = try copy(from: fd, to: wireIn, what: "QEMU's outgoing stream")
                    // An end of file after cancellation is the driver's shutdown, not QEMU's end.
                    if outgoingCancelled.load(ordering: .acquiring) { throw CancellationError() }
                    _ = shutdown(wireIn, Int32(SHUT_WR))
                    return statistics
                } catch {
                    breakWire()
                    throw error
                }
            }
        } onCancel: {
            outgoingCancelled.store(true, ordering: .releasing)
            breakWire()
        }
    }

    public func relayIncoming(to fd: Int32) async throws -> QEMURelayStatistics {
        try await withTaskCancellationHandler {
            try await DedicatedThread.run(name: "loopback-in") { [self] in
                let statistics: QEMURelayStatistics
                do {
                    statistics = try copy(from: wireOut, to: fd, what: "the incoming stream")
                } catch {
                    // The receiving half died (QEMU closed its end): the sender must hear of it,
                    // as a transport's sender hears of a receiver that stopped reading.
                    _ = shutdown(wireOut, Int32(SHUT_RDWR))
                    throw error
                }
                if senderFailed.load(ordering: .acquiring) {
                    throw LoopbackStreamRelayError.senderFailed(bytesDelivered: statistics.bytes)
                }
                if incomingCancelled.load(ordering: .acquiring) { throw CancellationError() }
                _ = shutdown(fd, Int32(SHUT_WR))
                return statistics
            }
        } onCancel: {
            incomingCancelled.store(true, ordering: .releasing)
            _ = shutdown(wireOut, Int32(SHUT_RDWR))
        }
    }

    /// The sending half gave up: the flag first, then the shutdown that the receiving half
    /// sees as end of file, so it knows the end is a break and not the stream's end.
    private func breakWire() {
        senderFailed.store(true, ordering: .releasing)
        _ = shutdown(wireIn, Int32(SHUT_RDWR))
    }

    private func copy(from source: Int32, to destination: Int32, what: String) throws -> QEMURelayStatistics {
        let started = ContinuousClock.now
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
        defer { buffer.deallocate() }
        var total: UInt64 = 0
        while true {
            let count = try SystemCall.check("read", context: "loopback relay reading \(what) after \(total) bytes") {
                read(source, buffer.baseAddress, buffer.count)
            }
            if count == 0 { break }
            var written = 0
            while written < count {
                written += try SystemCall.check("send", context: "loopback relay writing \(what) after \(total) bytes") {
                    send(destination, buffer.baseAddress! + written, count - written, Int32(MSG_NOSIGNAL))
                }
            }
            total += UInt64(count)
        }
        return QEMURelayStatistics(bytes: total, elapsed: ContinuousClock.now - started)
    }
}
