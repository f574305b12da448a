#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// The ends of the destination QEMU's `fd:` migration channel, whichever kind it is.
protocol QEMUMigrationChannelEnds: Sendable {
    /// Goes to QEMU with `getfd`.
    var qemuEnd: Int32 { get }
    /// The relay's end.
    var relayEnd: Int32 { get }
    /// After `getfd`: QEMU holds its own descriptor.
    func closeQEMUEnd()
    /// Wakes or fails a relay using its end and tells QEMU the channel is gone; the number
    /// stays a valid descriptor until the ends are released.
    func shutdownRelayEnd()
    /// What it is, for the log.
    var kind: String { get }
}

extension MigrationSocketPair: QEMUMigrationChannelEnds {
    var kind: String { "socket pair" }
}

/// A pipe as the destination QEMU's `fd:` channel, for relays that hand it the stream's pages
/// with vmsplice (`QEMUIncomingStreamRelay.acceptsPipe`). QEMU reads a pipe through its file
/// channel; a migration stream needs nothing else from the channel (no return path is asked
/// for). The write end is non-blocking so the relay waits in slices it controls.
final class MigrationPipe: QEMUMigrationChannelEnds {
    let qemuEnd: Int32
    let relayEnd: Int32
    /// The size the kernel gave the pipe.
    let capacity: Int
    private let qemuEndOpen = Atomic<Bool>(true)
    private let relayEndLive = Atomic<Bool>(true)

    /// As much in flight as the socket pair holds (see `MigrationSocketPair.bufferBytes` for
    /// why not more): whatever is queued when the source stops the guest is loaded inside the
    /// downtime. Unprivileged processes may ask up to /proc/sys/fs/pipe-max-size (1 MiB by
    /// default); if the kernel refuses, the default 64 KiB pipe still works, only with more
    /// wake-ups.
    static let requestedBytes = 1 << 20

    init() throws(SystemCallError) {
        let ends = try PipeCalls.makePipe(nonBlockingWriteEnd: true)
        qemuEnd = ends.read
        relayEnd = ends.write
        capacity = (try? PipeCalls.setSize(ends.write, Self.requestedBytes)) ?? 65536
    }

    var kind: String { "pipe of \(ByteCount(UInt64(capacity)).humanReadable)" }

    func closeQEMUEnd() {
        if qemuEndOpen.exchange(false, ordering: .acquiringAndReleasing) { close(qemuEnd) }
    }

    /// A pipe has no shutdown: /dev/null takes the write end's number (dup2 is atomic, so the
    /// relay never sees a closed or reused number). The pipe's last writer is then gone and
    /// QEMU reads end of file after what is queued; the relay's next vmsplice fails.
    func shutdownRelayEnd() {
        guard relayEndLive.exchange(false, ordering: .acquiringAndReleasing) else { return }
        let null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        if null >= 0 {
            _ = dup2(null, relayEnd)
            close(null)
        }
    }

    deinit {
        closeQEMUEnd()
        close(relayEnd)
    }
}
