import RdmigChannels
import RdmigQEMU
import RdmigSystem
import Synchronization

/// The source QEMU's stream into the byte-stream channel: `read(2)` from QEMU's socket
/// straight into the sender's registered staging slots (one kernel copy, no allocation per
/// chunk), each full slot one write-with-immediate into the destination's ring.
final class ChannelOutgoingRelay: QEMUOutgoingStreamRelay, @unchecked Sendable {
    private let sender: ByteStreamSender
    /// Bounds each wait for the destination's credit.
    private let creditTimeout: Duration
    /// Where the relay thread runs (the hot-path CPUs; empty: anywhere).
    private let cpus: [Int32]

    init(sender: ByteStreamSender, creditTimeout: Duration, cpus: [Int32] = []) {
        self.sender = sender
        self.creditTimeout = creditTimeout
        self.cpus = cpus
    }

    func relayOutgoing(from fd: Int32) async throws -> QEMURelayStatistics {
        let cancelled = CancelFlag()
        return try await withTaskCancellationHandler {
            try await DedicatedThread.run(name: "rdmig-qemu-out", cpus: cpus) { [sender, creditTimeout] in
                let started = ContinuousClock.now
                let cpuStarted = ProcessCPUTime.now()
                let bytes = try sender.relay(fromFileDescriptor: fd, idleTimeout: creditTimeout)
                // The driver shut the fd down to stop us: that end of file is not QEMU's, so
                // the destination must not see an end marker (close() sends none).
                if cancelled.isSet {
                    sender.close()
                    throw RelayStopped()
                }
                try sender.finish(timeout: creditTimeout)
                return QEMURelayStatistics(bytes: bytes, elapsed: ContinuousClock.now - started, stallTime: sender.creditWaitTime,
                                           chunks: sender.slotsSent, cpuTime: ProcessCPUTime.now() - cpuStarted)
            }
        } onCancel: {
            // Only a flag: the sender is single-threaded and the relay thread owns it.
            cancelled.set()
        }
    }
}

/// Set from a cancellation handler, read by the relay thread.
final class CancelFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// The migration driver stopped the relay (the migration was abandoned).
struct RelayStopped: Error, CustomStringConvertible {
    var description: String { "the relay was stopped because the migration was abandoned" }
}
