#if canImport(Glibc)
import Glibc
#endif
import RdmigChannels
import RdmigQEMU
import RdmigSystem

/// The byte-stream channel into the destination QEMU: each received slot goes from the
/// registered ring straight to QEMU's fd, no allocation per chunk. QEMU's fd is a pipe
/// (`acceptsPipe`): the slot's pages are handed to it with vmsplice, and QEMU copies straight
/// out of the ring, one copy fewer than writing them into a socket (see
/// `ByteStreamReceiver.splice(toPipe:)`). Any other fd is written to.
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

    /// QEMU gets a pipe: see the type's comment.
    var acceptsPipe: Bool { true }

    static func isPipe(_ fd: Int32) -> Bool {
        var status = stat()
        return fstat(fd, &status) == 0 && (status.st_mode & S_IFMT) == S_IFIFO
    }

    func relayIncoming(to fd: Int32) async throws -> QEMURelayStatistics {
        let cancelled = CancelFlag()
        return try await withTaskCancellationHandler {
            try await DedicatedThread.run(name: "rdmig-qemu-in", cpus: cpus) { [receiver, idleTimeout] in
                defer { receiver.close() }
                var started: ContinuousClock.Instant?
                var cpuStarted = Duration.zero
                var lastData = ContinuousClock.now
                var total: UInt64 = 0
                let pipe = Self.isPipe(fd)
                while true {
                    if cancelled.isSet { throw RelayStopped() }
                    let count: Int
                    do {
                        count = pipe ? try receiver.splice(toPipe: fd, timeout: Self.slice)
                                     : try receiver.read(toFileDescriptor: fd, timeout: Self.slice)
                    } catch ChannelError.timedOut(_, _) {
                        if ContinuousClock.now - lastData > idleTimeout {
                            throw ChannelError.timedOut(operation: "relaying the QEMU stream: no progress (the source sent nothing, or the destination QEMU read nothing)", after: idleTimeout)
                        }
                        continue
                    }
                    if count == 0 { break }
                    lastData = ContinuousClock.now
                    if started == nil {
                        started = lastData
                        cpuStarted = ProcessCPUTime.now()
                    }
                    total += UInt64(count)
                }
                // The pipe refers to the ring's pages until QEMU has read them: the ring must
                // outlive that.
                while pipe {
                    if cancelled.isSet { throw RelayStopped() }
                    do {
                        try receiver.waitForPipeReader(fd, timeout: Self.slice)
                        break
                    } catch ChannelError.timedOut(_, _) {
                        if ContinuousClock.now - lastData > idleTimeout {
                            throw ChannelError.timedOut(operation: "waiting for the destination QEMU to read the end of the stream", after: idleTimeout)
                        }
                    }
                }
                let elapsed = started.map { ContinuousClock.now - $0 } ?? .zero
                return QEMURelayStatistics(bytes: total, elapsed: elapsed,
                                           cpuTime: started == nil ? nil : ProcessCPUTime.now() - cpuStarted)
            }
        } onCancel: {
            cancelled.set()
        }
    }
}
