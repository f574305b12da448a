import RdmigChannels
import RdmigQEMU
import RdmigSystem

/// The byte-stream channel into the destination QEMU's socket: each received slot is
/// written from the registered ring straight to QEMU's fd (no copy, no allocation per chunk).
///
/// Waits for the source in short slices: shutting the fd down (how the driver stops a relay)
/// does not wake a receiver waiting for the sender, so the relay thread looks at its
/// cancellation flag between slices instead.
final class ChannelIncomingRelay: QEMUIncomingStreamRelay, @unchecked Sendable {
    private let receiver: ByteStreamReceiver
    /// Longest quiet spell accepted from the source: QEMU's setup, the source's
    /// pre-switchover VF state transfer.
    private let idleTimeout: Duration
    private static let slice = Duration.milliseconds(250)
    /// Where the relay thread runs (the hot-path CPUs; empty: anywhere).
    private let cpus: [Int32]

    init(receiver: ByteStreamReceiver, idleTimeout: Duration, cpus: [Int32] = []) {
        self.receiver = receiver
        self.idleTimeout = idleTimeout
        self.cpus = cpus
    }

    func relayIncoming(to fd: Int32) async throws -> QEMURelayStatistics {
        let cancelled = CancelFlag()
        return try await withTaskCancellationHandler {
            try await DedicatedThread.run(name: "rdmig-qemu-in", cpus: cpus) { [receiver, idleTimeout] in
                defer { receiver.close() }
                var started: ContinuousClock.Instant?
                var lastData = ContinuousClock.now
                var total: UInt64 = 0
                while true {
                    if cancelled.isSet { throw RelayStopped() }
                    let count: Int
                    do {
                        count = try receiver.read(toFileDescriptor: fd, timeout: Self.slice)
                    } catch ChannelError.timedOut(_, _) {
                        if ContinuousClock.now - lastData > idleTimeout {
                            throw ChannelError.timedOut(operation: "waiting for the source's QEMU stream", after: idleTimeout)
                        }
                        continue
                    }
                    if count == 0 { break }
                    lastData = ContinuousClock.now
                    if started == nil { started = lastData }
                    total += UInt64(count)
                }
                let elapsed = started.map { ContinuousClock.now - $0 } ?? .zero
                return QEMURelayStatistics(bytes: total, elapsed: elapsed)
            }
        } onCancel: {
            cancelled.set()
        }
    }
}
