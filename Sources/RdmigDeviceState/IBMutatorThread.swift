#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// Drives an ib-sw VF's changes from a thread, at a steady rate, the way a guest's verbs
/// traffic would while it runs. The provider drops changes while the device is stopped.
public final class IBMutatorThread: Sendable {
    private final class Control: Sendable {
        let stopping = Atomic<Bool>(false)
        let applied = Atomic<Int>(0)
    }

    private let control = Control()
    private let thread: SystemThread

    /// Starts applying `changesPerSecond` changes, in batches of `batch`.
    public init(
        provider: IBSoftwareDeviceStateProvider, changesPerSecond: Int, batch: Int = 64
    ) throws(SystemCallError) {
        precondition(changesPerSecond > 0 && batch > 0, "rate and batch must be positive")
        let control = self.control
        let interval = Double(batch) / Double(changesPerSecond)
        thread = try SystemThread(name: "ib-sw mutator") {
            let pause = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - interval.rounded(.down)) * 1e9))
            while !control.stopping.load(ordering: .acquiring) {
                let made = provider.step(batch)
                control.applied.add(made, ordering: .relaxed)
                var request = pause
                var remaining = timespec()
                while nanosleep(&request, &remaining) == -1 && SystemCall.currentErrno() == EINTR {
                    request = remaining
                }
            }
        }
    }

    /// Changes made so far.
    public var applied: Int { control.applied.load(ordering: .relaxed) }

    /// Stops and waits for the thread. Safe to call more than once.
    public func stop() {
        control.stopping.store(true, ordering: .releasing)
        thread.join()
    }

    deinit { stop() }
}
