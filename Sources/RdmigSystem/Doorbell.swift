#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import CRdmigShims

/// Wakes one sleeping consumer when a producer has pushed work, without a system call on
/// the fast path: the producer rings (an eventfd write) only when the consumer said it is
/// about to sleep. The consumer re-checks its queue after arming, so no wake-up is lost.
public final class Doorbell: Sendable {
    public let fileDescriptor: Int32
    private let sleeping = Atomic<Bool>(false)

    public init() throws(SystemCallError) {
        fileDescriptor = try SystemCall.check("eventfd") { eventfd(0, Int32(EFD_CLOEXEC)) }
    }

    deinit { close(fileDescriptor) }

    /// Producer side: call after publishing work. Only the producer that takes the flag writes:
    /// the consumer stays marked asleep until it runs again, and a burst of posts meanwhile
    /// made one eventfd write each (measured: 10.5 K writes per GiB of 64 KiB WRITEs from
    /// `bench transport`'s posting thread; issue 14, Perf/README.md).
    @inline(__always)
    public func ring() {
        if sleeping.load(ordering: .sequentiallyConsistent),
           sleeping.exchange(false, ordering: .sequentiallyConsistent) {
            forceRing()
        }
    }

    /// Wakes the consumer whether or not it is asleep (close, error, shutdown).
    public func forceRing() {
        var one: UInt64 = 1
        _ = write(fileDescriptor, &one, 8)
    }

    /// Consumer side, for callers that poll `fileDescriptor` themselves: takes the rings.
    public func drain() {
        var value: UInt64 = 0
        _ = read(fileDescriptor, &value, 8)
    }

    /// Consumer side: `hasWork` is evaluated after arming; sleeps only when it is false.
    /// Returns false when `timeoutMilliseconds` passed without a ring (-1 waits forever).
    @discardableResult
    public func sleep(timeoutMilliseconds: Int32, unless hasWork: () -> Bool) -> Bool {
        sleeping.store(true, ordering: .sequentiallyConsistent)
        defer { sleeping.store(false, ordering: .sequentiallyConsistent) }
        if hasWork() { return true }
        var descriptor = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, timeoutMilliseconds)
        if ready > 0 {
            var value: UInt64 = 0
            _ = read(fileDescriptor, &value, 8)
            return true
        }
        return false
    }
}
