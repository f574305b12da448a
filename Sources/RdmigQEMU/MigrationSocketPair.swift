#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// The two ends of QEMU's `fd:` migration channel: one goes to QEMU with `getfd` (QEMU keeps
/// its own copy, so ours is closed right after), the relay reads or writes the other.
/// A stream socket rather than a pipe: QEMU's qio_channel_new_fd (io/channel-util.c) then
/// gives it a socket channel, the one tcp:/unix: migration uses, and shutdown(2) on our end
/// reaches QEMU as the end of the stream.
final class MigrationSocketPair: Sendable {
    let qemuEnd: Int32
    let relayEnd: Int32
    private let qemuEndOpen = Atomic<Bool>(true)

    init() throws(SystemCallError) {
        var ends: [Int32] = [-1, -1]
        try SystemCall.check("socketpair", context: "QEMU migration channel") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends)
        }
        qemuEnd = ends[0]
        relayEnd = ends[1]
    }

    /// After `getfd`: QEMU holds its own descriptor; ours would keep the channel open after
    /// QEMU closes it, and the relay would never see the end of the stream.
    func closeQEMUEnd() {
        if qemuEndOpen.exchange(false, ordering: .acquiringAndReleasing) { close(qemuEnd) }
    }

    /// Wakes a relay blocked on its end (read returns 0, write fails) and tells QEMU the
    /// channel is gone. The descriptor stays valid until the pair is released.
    func shutdownRelayEnd() {
        _ = shutdown(relayEnd, Int32(SHUT_RDWR))
    }

    deinit {
        closeQEMUEnd()
        close(relayEnd)
    }
}
