#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Testing

@Suite("doorbell")
struct DoorbellTests {
    /// The eventfd's counter: how many times it was written since the last read (0: not readable).
    static func pendingRings(_ bell: Doorbell) -> UInt64 {
        var descriptor = pollfd(fd: bell.fileDescriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, 0) == 1 else { return 0 }
        var value: UInt64 = 0
        _ = read(bell.fileDescriptor, &value, 8)
        return value
    }

    /// A producer posting a burst while the consumer is marked asleep (here: inside its
    /// re-check, after arming) wakes it with one eventfd write, not one per post.
    @Test func aBurstOfRingsWhileTheConsumerIsAsleepWritesOnce() throws {
        let bell = try Doorbell()
        bell.sleep(timeoutMilliseconds: 0) {
            for _ in 0..<5 { bell.ring() }
            return true
        }
        #expect(Self.pendingRings(bell) == 1)
    }

    @Test func ringingAnAwakeConsumerWritesNothingAndASleepingOneIsWoken() throws {
        let bell = try Doorbell()
        bell.ring()
        #expect(Self.pendingRings(bell) == 0)
        // Armed and nothing to do: the ring from inside the re-check is what wakes the poll.
        let woken = bell.sleep(timeoutMilliseconds: 5000) {
            bell.ring()
            return false
        }
        #expect(woken)
        #expect(Self.pendingRings(bell) == 0)
        // No ring: the sleep times out.
        #expect(!bell.sleep(timeoutMilliseconds: 10) { false })
    }
}
