#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// Waiting for a relayed file descriptor (a QEMU migration socket) to become readable or
/// writable, for descriptors opened non-blocking.
enum FileDescriptorWait {
    static func wait(_ fd: Int32, events: Int16, timeout: Duration?, operation: @autoclosure () -> String) throws(ChannelError) {
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        let milliseconds: Int32 = timeout.map { Int32(clamping: Int64($0.milliseconds.rounded(.up))) } ?? -1
        let ready: Int32
        do {
            ready = try SystemCall.check("poll", context: operation()) { poll(&descriptor, 1, milliseconds) }
        } catch {
            throw .system(error)
        }
        if ready == 0 { throw .timedOut(operation: operation(), after: timeout ?? .zero) }
    }

    /// True when `fd` can be read without blocking (data, end of file or an error pending).
    static func isReadable(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }
}
