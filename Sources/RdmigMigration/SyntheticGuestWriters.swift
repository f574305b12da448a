#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import RdmigSystem

/// The running part of a `SyntheticGuest`: the writer threads and everything they share.
/// Kept apart from the facade so the threads hold this object, not the guest, and the
/// guest's `deinit` can stop them.
final class SyntheticGuestWriters: @unchecked Sendable {
    let configuration: SyntheticGuestConfiguration
    let region: GuestMemoryRegion
    let log: SyntheticDirtyLog
    let pageSize: Int
    let versions: UnsafeMutablePointer<Atomic<UInt32>>
    let pageCount: Int

    let paused = Atomic<Bool>(false)
    let stopping = Atomic<Bool>(false)
    let throttlePercent = Atomic<Int>(0)
    let dirtyRate: Atomic<UInt64>
    let pagesWritten = Atomic<UInt64>(0)
    /// Bumped on every control change; a sleeping writer wakes when it moves.
    let generation = Atomic<UInt64>(0)

    final class Writer: @unchecked Sendable {
        let index: Int
        /// True while the writer is between its pause check and the end of a page write:
        /// `pause()` waits for it to fall (a Dekker handshake with `paused`, both sequentially
        /// consistent, so either the writer sees the pause or the pauser sees the write).
        let busy = Atomic<Bool>(false)
        let doorbell: Doorbell
        var thread: SystemThread?
        init(index: Int) throws(SystemCallError) {
            self.index = index
            doorbell = try Doorbell()
        }
    }

    private struct Lifecycle {
        var started = false
        var writers: [Writer] = []
    }
    private let lifecycle = Mutex(Lifecycle())

    /// QEMU's cpu-throttle runs a vCPU for a 10 ms timeslice, then sleeps pct/(1-pct) of it
    /// (system/cpu-throttle.c, CPU_THROTTLE_TIMESLICE_NS); the writers do the same.
    static let throttleTimeslice = 0.010

    /// Seconds a writer sleeps after each timeslice at `percent` throttle.
    static func throttleSleep(percent: Int) -> Double {
        Double(percent) / Double(100 - percent) * throttleTimeslice
    }

    init(configuration: SyntheticGuestConfiguration, region: GuestMemoryRegion, log: SyntheticDirtyLog,
         initialVersions: [UInt32]?) {
        self.configuration = configuration
        self.region = region
        self.log = log
        pageSize = region.pageSize
        pageCount = region.pageCount
        dirtyRate = Atomic(configuration.dirtyRate.bytesPerSecond)
        versions = .allocate(capacity: max(pageCount, 1))
        for page in 0..<max(pageCount, 1) {
            let version = page < (initialVersions?.count ?? 0) ? initialVersions![page] : 0
            (versions + page).initialize(to: Atomic<UInt32>(version))
        }
    }

    deinit {
        stop()
        versions.deinitialize(count: max(pageCount, 1))
        versions.deallocate()
    }

    var isRunning: Bool { lifecycle.withLock { $0.started } }

    func start() throws(SystemCallError) {
        try lifecycle.withLock { (state: inout Lifecycle) throws(SystemCallError) in
            guard !state.started else { return }
            stopping.store(false, ordering: .sequentiallyConsistent)
            var created: [Writer] = []
            for index in 0..<configuration.writers {
                created.append(try Writer(index: index))
            }
            do throws(SystemCallError) {
                for writer in created {
                    writer.thread = try SystemThread(name: "rdmig-guest-\(writer.index)") { [self] in
                        self.run(writer)
                    }
                }
            } catch {
                halt(created)
                throw error
            }
            state.writers = created
            state.started = true
        }
    }

    func stop() {
        lifecycle.withLock { state in
            guard state.started else { return }
            halt(state.writers)
            state.writers = []
            state.started = false
        }
    }

    private func halt(_ writers: [Writer]) {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake(writers)
        for writer in writers { writer.thread?.join() }
    }

    func pause() {
        paused.store(true, ordering: .sequentiallyConsistent)
        let writers = lifecycle.withLock { $0.writers }
        wake(writers)
        for writer in writers {
            while writer.busy.load(ordering: .sequentiallyConsistent) { sched_yield() }
        }
    }

    func resume() {
        paused.store(false, ordering: .sequentiallyConsistent)
        wakeAll()
    }

    func wakeAll() {
        wake(lifecycle.withLock { $0.writers })
    }

    private func wake(_ writers: [Writer]) {
        generation.add(1, ordering: .sequentiallyConsistent)
        for writer in writers { writer.doorbell.ring() }
    }

    @inline(__always)
    func writePage(_ page: Int) {
        let version = versions[page].load(ordering: .relaxed) &+ 1
        SyntheticPageContent.fill(
            region.pagePointer(page), pageSize: pageSize, seed: configuration.seed, page: page, version: version)
        versions[page].store(version, ordering: .releasing)
        log.mark(page)
    }

    /// Sleeps up to `seconds` (at most 50 ms per call), waking early on any control change.
    private func nap(_ writer: Writer, seconds: Double) {
        let snapshot = generation.load(ordering: .sequentiallyConsistent)
        let milliseconds = Int32(min(50, max(1, (seconds * 1000).rounded(.up))))
        writer.doorbell.sleep(timeoutMilliseconds: milliseconds) {
            generation.load(ordering: .sequentiallyConsistent) != snapshot
        }
    }

    private func run(_ writer: Writer) {
        var chooser = SyntheticPageChooser(
            writer: writer.index, writers: configuration.writers, workingSetPages: configuration.workingSetPages,
            pattern: configuration.pattern, hotFraction: configuration.hotFraction,
            hotWriteFraction: configuration.hotWriteFraction, seed: configuration.seed)
        let clock = ContinuousClock()
        let origin = clock.now
        func now() -> Double { (clock.now - origin).seconds }
        let page = Double(pageSize)
        var bucket = TokenBucket(rate: 0, capacity: 0)
        var appliedRate = UInt64.max
        var sliceStart = now()
        bucket.restart(now: sliceStart)

        while !stopping.load(ordering: .acquiring) {
            if paused.load(ordering: .sequentiallyConsistent) {
                nap(writer, seconds: 0.05)
                sliceStart = now()
                bucket.restart(now: sliceStart)
                continue
            }
            let throttle = throttlePercent.load(ordering: .relaxed)
            var time = now()
            if throttle > 0, time - sliceStart >= SyntheticGuestWriters.throttleTimeslice {
                let sleep = SyntheticGuestWriters.throttleSleep(percent: throttle)
                let end = time + sleep
                while time < end, !paused.load(ordering: .relaxed), !stopping.load(ordering: .relaxed),
                      throttlePercent.load(ordering: .relaxed) == throttle {
                    nap(writer, seconds: end - time)
                    time = now()
                }
                sliceStart = time
                bucket.restart(now: time)
                continue
            }
            let rate = dirtyRate.load(ordering: .relaxed)
            if rate != appliedRate {
                let share = Double(rate) / Double(configuration.writers)
                // Bursts of at most 10 ms of writing (2 pages at low rates) keep the rate
                // smooth at the scale of a pre-copy pass.
                bucket.setRate(share, capacity: max(2 * page, share * 0.010))
                appliedRate = rate
            }
            if rate == 0 {
                nap(writer, seconds: 0.05)
                bucket.restart(now: now())
                continue
            }
            bucket.refill(now: time)
            guard bucket.take(page) else {
                nap(writer, seconds: bucket.secondsUntil(page))
                continue
            }
            var written: UInt64 = 0
            repeat {
                writer.busy.store(true, ordering: .sequentiallyConsistent)
                if paused.load(ordering: .sequentiallyConsistent) {
                    writer.busy.store(false, ordering: .releasing)
                    break
                }
                guard let next = chooser.next() else {
                    writer.busy.store(false, ordering: .releasing)
                    break
                }
                writePage(next)
                writer.busy.store(false, ordering: .releasing)
                written &+= 1
            } while written < 64 && bucket.take(page)
            if written > 0 { pagesWritten.add(written, ordering: .relaxed) }
        }
    }
}
