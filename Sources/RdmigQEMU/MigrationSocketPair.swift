#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// The two ends of QEMU's `fd:` migration channel: one goes to QEMU with `getfd` (QEMU keeps
/// its own copy, so ours is closed right after), the relay reads or writes the other. The
/// source's channel always, and the destination's for relays that cannot use a pipe
/// (`MigrationPipe`). A stream socket: QEMU's qio_channel_new_fd (io/channel-util.c) then
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
        // Room for a megabyte in flight each way: with the default ~200 KiB the destination
        // QEMU drained the pair and went back to its poll loop every few dozen KiB and the
        // source QEMU blocked on every burst. Not more: whatever is queued between the two
        // QEMUs when the source stops the guest must be loaded before the destination can
        // resume it. Measured (1 GiB test guest, interleaved, medians; default / 1 MiB / 4 MiB):
        // at 50 MB/s (6 runs) total 732 / 482 / 540 ms, STOP to RESUME 4.7 / 4.2 / 10.4 ms,
        // QEMU's direct tcp: 890 ms, 10.4 ms; idle (4 runs) total 405 / 733 / 630 ms, STOP to
        // RESUME 40 / 24 / 50 ms, direct 567 ms, 16.5 ms. Totals spread widely on these 2
        // shared cores; the queue's cost in STOP to RESUME is the steadier effect.
        do {
            for end in ends {
                try Self.setBuffer(end, force: Self.sendBufferForce, plain: SO_SNDBUF, "SO_SNDBUF")
                try Self.setBuffer(end, force: Self.receiveBufferForce, plain: SO_RCVBUF, "SO_RCVBUF")
            }
        } catch {
            ends.forEach { close($0) }
            throw error
        }
        qemuEnd = ends[0]
        relayEnd = ends[1]
    }

    /// Requested send and receive buffer of each end.
    static let bufferBytes: Int32 = 1 << 20
    /// SO_SNDBUFFORCE / SO_RCVBUFFORCE (include/uapi/asm-generic/socket.h): with
    /// CAP_NET_ADMIN they pass net.core.wmem_max / rmem_max, which default to ~208 KiB.
    static let sendBufferForce: Int32 = 32
    static let receiveBufferForce: Int32 = 33

    /// The forced option where this process may (root, as rdmig usually runs to pin memory),
    /// else the plain one, which the kernel caps at the system maximum.
    private static func setBuffer(_ fd: Int32, force: Int32, plain: Int32, _ name: String) throws(SystemCallError) {
        var size = bufferBytes
        let length = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(fd, SOL_SOCKET, force, &size, length) == 0 { return }
        try SystemCall.check("setsockopt(\(name))", context: "QEMU migration channel") {
            setsockopt(fd, SOL_SOCKET, plain, &size, length)
        }
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
