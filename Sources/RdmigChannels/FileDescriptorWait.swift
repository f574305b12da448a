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

    /// Waits for `events` at most `slice` (returning quietly when the slice passes, so the
    /// caller can look at other things) and throws `.timedOut` once `deadline` has passed.
    static func waitSlice(_ fd: Int32, events: Int16, until deadline: ContinuousClock.Instant?, slice: Duration,
                          timeout: Duration?, operation: @autoclosure () -> String) throws(ChannelError) {
        var wait = slice
        if let deadline {
            let left = deadline - ContinuousClock.now
            if left <= .zero { throw .timedOut(operation: operation(), after: timeout ?? .zero) }
            wait = min(wait, left)
        }
        var descriptor = pollfd(fd: fd, events: events, revents: 0)
        let milliseconds = Int32(clamping: Int64(wait.milliseconds.rounded(.up)))
        if poll(&descriptor, 1, max(1, milliseconds)) < 0 {
            let error = SystemCall.currentErrno()
            if error != EINTR { throw .system(SystemCallError(call: "poll", errno: error, context: operation())) }
        }
    }

    /// True when `fd` can be read without blocking (data, end of file or an error pending).
    static func isReadable(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }
}
