#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import RdmigSystem
import CRdmigShims

/// Dirty tracking by write protection with userfaultfd, for guest memory that lives in this
/// process (an embedded VMM, the synthetic guest) and whose writers cannot or should not mark
/// pages themselves.
///
/// `start()` write-protects the whole region (UFFDIO_WRITEPROTECT, mode WP). The first write
/// to a protected page faults; a handler thread reads the fault from the descriptor, removes
/// the protection from that page (which wakes the writer) and then marks the page. The
/// order matters: unprotect-then-mark means an unprotected page is always either marked, or
/// taken by a collection that has not re-protected it yet, so no write goes unreported.
/// `collectAndClear` first takes the marks (atomic swap), then re-protects exactly the taken
/// pages before returning; the caller reads page content only after that, so a write landing
/// between the swap and the re-protect is in the content it sends.
///
/// A writer resumes as soon as its page is unprotected, possibly before the handler has
/// marked it; a collection therefore first waits for the handler to finish the faults it is
/// resolving, so that after `pause()` (no writer mid-write) the final collection holds every
/// page written.
///
/// Kernel support: write-protect faults on anonymous memory since Linux 5.7, on shmem
/// (memfd, tmpfs) and hugetlbfs since 5.19; not on files of disk file systems (EINVAL at
/// register). Protection skips anonymous pages that were never touched (pte_none), so
/// `start()` first reads every page to populate it, as QEMU's background snapshot does
/// (migration/ram.c, ram_block_populate_read). UFFD_FEATURE_WP_UNPOPULATED (6.4+) is meant
/// to make that unnecessary, but on this machine's 6.18 kernel writes to untouched anonymous
/// pages still did not fault with it enabled, so the pages are populated regardless.
public final class UserfaultfdDirtyLog: DirtyLog, @unchecked Sendable {
    public let region: GuestMemoryRegion
    public var pageCount: Int { region.pageCount }
    public var pageSize: Int { region.pageSize }
    /// The features the kernel offered (uffdio_api.features).
    public let kernelFeatures: UInt64
    /// The features this log enabled.
    public let enabledFeatures: UInt64
    /// True when the descriptor was opened with UFFD_USER_MODE_ONLY: faults the kernel takes
    /// on the process's behalf (read(2) into guest memory) fail with EFAULT instead of being
    /// tracked.
    public let userModeOnly: Bool

    private let descriptor: Int32
    private let marks: AtomicPageBitmap
    private let stopSignal: Doorbell
    private let faults = Atomic<UInt64>(0)
    /// Faults the handler has unprotected but not yet marked.
    private let resolving = Atomic<Int>(0)
    private let handlerFailure = Mutex<SystemCallError?>(nil)
    private let populateSink = Atomic<UInt8>(0)

    private struct State {
        var registered = false
        var tracking = false
        var handler: SystemThread?
    }
    private let state = Mutex(State())

    // The uAPI's values (include/uapi/linux/userfaultfd.h). The Debian 12 headers predate the
    // last two, so they are written out here.
    static let featurePageFaultFlagWP: UInt64 = 1 << 0
    static let featureWPHugetlbfsShmem: UInt64 = 1 << 12
    static let featureWPUnpopulated: UInt64 = 1 << 14
    static let registerModeWP: UInt64 = 1 << 1
    static let writeProtectModeWP: UInt64 = 1 << 0
    static let writeProtectIoctlBit: UInt64 = 1 << 6
    static let eventPageFault: UInt8 = 0x12
    static let pageFaultFlagWP: UInt64 = 1 << 1
    static let userModeOnlyFlag: Int32 = 1
    static let api: UInt64 = 0xAA

    /// Opens a userfaultfd, negotiates write-protect faults and registers `region` for them.
    /// Fails with a `DirtyLogError` that names the missing piece where the kernel, the
    /// permissions or the memory type do not allow it.
    public init(region: GuestMemoryRegion, userModeOnly: Bool = false) throws(DirtyLogError) {
        self.region = region
        self.userModeOnly = userModeOnly
        marks = AtomicPageBitmap(pageCount: region.pageCount)
        do throws(SystemCallError) { stopSignal = try Doorbell() } catch { throw .systemCall(error) }

        // The API handshake fixes the features once per descriptor, and asking for one the
        // kernel lacks fails the handshake; so ask a throwaway descriptor what there is first
        // (QEMU's uffd_query_features does the same).
        let probe = try UserfaultfdDirtyLog.openDescriptor(userModeOnly: userModeOnly)
        let offered: UInt64
        do {
            offered = try UserfaultfdDirtyLog.handshake(probe, features: 0)
            close(probe)
        } catch {
            close(probe)
            throw error
        }
        kernelFeatures = offered
        guard offered & UserfaultfdDirtyLog.featurePageFaultFlagWP != 0 else {
            throw .featureMissing("UFFD_FEATURE_PAGEFAULT_FLAG_WP (write-protect faults)", kernelFeatures: offered)
        }
        let wanted = UserfaultfdDirtyLog.featurePageFaultFlagWP | UserfaultfdDirtyLog.featureWPHugetlbfsShmem
            | UserfaultfdDirtyLog.featureWPUnpopulated
        enabledFeatures = wanted & offered

        let fd = try UserfaultfdDirtyLog.openDescriptor(userModeOnly: userModeOnly)
        do {
            _ = try UserfaultfdDirtyLog.handshake(fd, features: enabledFeatures)
        } catch {
            close(fd)
            throw error
        }
        descriptor = fd
        // From here on a throw runs deinit, which closes the descriptor.
        try register()
    }

    deinit {
        stop()
        state.withLock { state in
            if state.registered { unregisterLocked(&state) }
        }
        close(descriptor)
    }

    /// Whether this kernel and process can track writes with userfaultfd: nil when they can,
    /// else the error `init` would throw (tests and `rdmig probe` report it).
    public static func probe() -> DirtyLogError? {
        do {
            let fd = try openDescriptor(userModeOnly: false)
            defer { close(fd) }
            let offered = try handshake(fd, features: 0)
            if offered & featurePageFaultFlagWP == 0 {
                return .featureMissing("UFFD_FEATURE_PAGEFAULT_FLAG_WP (write-protect faults)", kernelFeatures: offered)
            }
            return nil
        } catch {
            return error
        }
    }

    /// Write faults the handler has resolved since the log was created.
    public var faultsHandled: UInt64 { faults.load(ordering: .relaxed) }

    // MARK: DirtyLog

    public func start() throws(DirtyLogError) {
        try state.withLock { (state: inout State) throws(DirtyLogError) in
            if let failure = handlerFailure.withLock({ $0 }) { throw .handlerFailed(failure) }
            if !state.registered { try registerLocked(&state) }
            populate()
            marks.clear()
            try protect(0..<pageCount, on: true)
            if state.handler == nil {
                do throws(SystemCallError) {
                    state.handler = try SystemThread(name: "rdmig-uffd-\(region.id)") { [self] in self.handleFaults() }
                } catch {
                    try? protect(0..<pageCount, on: false)
                    throw .systemCall(error)
                }
            }
            state.tracking = true
        }
    }

    @discardableResult
    public func collectAndClear(into bitmap: inout DirtyBitmap) throws(DirtyLogError) -> Int {
        guard state.withLock({ $0.tracking }) else { throw .notTracking }
        if let failure = handlerFailure.withLock({ $0 }) { throw .handlerFailed(failure) }
        while resolving.load(ordering: .sequentiallyConsistent) != 0 { sched_yield() }
        return try marks.drain(into: &bitmap) { (run: Range<Int>) throws(DirtyLogError) in
            try protect(run, on: true)
        }
    }

    public func stop() {
        state.withLock { state in
            state.tracking = false
            if let handler = state.handler {
                stopSignal.forceRing()
                handler.join()
                state.handler = nil
            }
            // Lifting the protection also wakes any writer still waiting on a fault the
            // handler did not get to.
            if state.registered { try? protect(0..<pageCount, on: false) }
        }
    }

    // MARK: registration and protection

    private func register() throws(DirtyLogError) {
        try state.withLock { (state: inout State) throws(DirtyLogError) in try registerLocked(&state) }
    }

    private func registerLocked(_ state: inout State) throws(DirtyLogError) {
        var request = uffdio_register(
            range: uffdio_range(start: UInt64(UInt(bitPattern: region.baseAddress)), len: UInt64(region.length)),
            mode: UserfaultfdDirtyLog.registerModeWP, ioctls: 0)
        let result = ioctl(descriptor, rdmig_uffdio_register_request(), &request)
        if result != 0 {
            let error = SystemCallError(
                call: "ioctl(UFFDIO_REGISTER, MODE_WP)", errno: SystemCall.currentErrno(), context: "region \(region.id)")
            if error.errno == EINVAL {
                throw .memoryTypeNotSupported(region: region.id, backing: region.backing.description, error)
            }
            throw .systemCall(error)
        }
        guard request.ioctls & UserfaultfdDirtyLog.writeProtectIoctlBit != 0 else {
            var range = request.range
            _ = ioctl(descriptor, rdmig_uffdio_unregister_request(), &range)
            throw .featureMissing("UFFDIO_WRITEPROTECT on \(region.backing)", kernelFeatures: kernelFeatures)
        }
        state.registered = true
    }

    private func unregisterLocked(_ state: inout State) {
        var range = uffdio_range(start: UInt64(UInt(bitPattern: region.baseAddress)), len: UInt64(region.length))
        _ = ioctl(descriptor, rdmig_uffdio_unregister_request(), &range)
        state.registered = false
    }

    /// Sets (`on`) or lifts write protection on pages `pages`. Lifting wakes writers waiting
    /// on faults in the range.
    private func protect(_ pages: Range<Int>, on: Bool) throws(DirtyLogError) {
        let start = UInt(bitPattern: region.baseAddress) + UInt(pages.lowerBound * pageSize)
        var request = uffdio_writeprotect(
            range: uffdio_range(start: UInt64(start), len: UInt64(pages.count * pageSize)),
            mode: on ? UserfaultfdDirtyLog.writeProtectModeWP : 0)
        while ioctl(descriptor, rdmig_uffdio_writeprotect_request(), &request) != 0 {
            let errno = SystemCall.currentErrno()
            if errno == EINTR || errno == EAGAIN { continue }
            throw .systemCall(SystemCallError(
                call: "ioctl(UFFDIO_WRITEPROTECT)", errno: errno,
                context: "region \(region.id) pages \(pages.lowerBound)..<\(pages.upperBound) \(on ? "protect" : "unprotect")"))
        }
    }

    /// Touches every host page with a read so protection applies to it.
    private func populate() {
        let step = GuestMemoryRegion.hostPageSize
        var accumulated: UInt8 = 0
        var offset = 0
        while offset < region.length {
            accumulated ^= UnsafeRawPointer(region.baseAddress).load(fromByteOffset: offset, as: UInt8.self)
            offset += step
        }
        // Published so the loads cannot be optimised away.
        populateSink.store(accumulated, ordering: .relaxed)
    }

    // MARK: the fault handler

    private func handleFaults() {
        let capacity = 64
        let messages = UnsafeMutablePointer<uffd_msg>.allocate(capacity: capacity)
        defer { messages.deallocate() }
        var descriptors = [
            pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stopSignal.fileDescriptor, events: Int16(POLLIN), revents: 0),
        ]
        let base = UInt(bitPattern: region.baseAddress)
        let messageSize = MemoryLayout<uffd_msg>.stride
        while true {
            descriptors[0].revents = 0
            descriptors[1].revents = 0
            let ready = poll(&descriptors, 2, -1)
            if ready < 0 {
                if SystemCall.currentErrno() == EINTR { continue }
                fail(SystemCallError(call: "poll", errno: SystemCall.currentErrno(), context: "userfaultfd handler"))
                return
            }
            if descriptors[1].revents != 0 { return }
            let count = read(descriptor, messages, capacity * messageSize)
            if count < 0 {
                let errno = SystemCall.currentErrno()
                if errno == EAGAIN || errno == EINTR { continue }
                fail(SystemCallError(call: "read", errno: errno, context: "userfaultfd messages"))
                return
            }
            for index in 0..<(count / messageSize) {
                let message = messages[index]
                guard message.event == UserfaultfdDirtyLog.eventPageFault,
                      message.arg.pagefault.flags & UserfaultfdDirtyLog.pageFaultFlagWP != 0 else { continue }
                let page = Int((UInt(message.arg.pagefault.address) - base) / UInt(pageSize))
                guard page >= 0, page < pageCount else { continue }
                // Counted before the writer can run again, so a collection that starts after
                // the writer resumed waits for the mark below.
                resolving.add(1, ordering: .sequentiallyConsistent)
                do throws(DirtyLogError) {
                    try protect(page..<(page + 1), on: false)
                } catch {
                    resolving.subtract(1, ordering: .sequentiallyConsistent)
                    if case .systemCall(let cause) = error { fail(cause) }
                    return
                }
                marks.mark(page)
                resolving.subtract(1, ordering: .sequentiallyConsistent)
                faults.add(1, ordering: .relaxed)
            }
        }
    }

    /// Records the handler's failure and lifts all protection so no writer waits forever;
    /// the next collection reports the failure.
    private func fail(_ error: SystemCallError) {
        handlerFailure.withLock { $0 = error }
        var request = uffdio_writeprotect(
            range: uffdio_range(start: UInt64(UInt(bitPattern: region.baseAddress)), len: UInt64(region.length)),
            mode: 0)
        _ = ioctl(descriptor, rdmig_uffdio_writeprotect_request(), &request)
    }

    // MARK: opening

    static func openDescriptor(userModeOnly: Bool) throws(DirtyLogError) -> Int32 {
        let flags = O_CLOEXEC | O_NONBLOCK | (userModeOnly ? userModeOnlyFlag : 0)
        let fd = rdmig_userfaultfd(flags)
        if fd >= 0 { return fd }
        let syscallError = SystemCallError(call: "userfaultfd", errno: -fd)
        switch -fd {
        case ENOSYS:
            throw .userfaultfdUnavailable(syscallError)
        case EPERM, EACCES:
            // Without vm.unprivileged_userfaultfd or CAP_SYS_PTRACE, Linux 6.1+ still hands out
            // descriptors through /dev/userfaultfd to whoever may open it.
            let device = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC)
            if device >= 0 {
                defer { close(device) }
                let created = ioctl(device, rdmig_userfaultfd_ioc_new_request(), flags)
                if created >= 0 { return created }
            }
            throw .userfaultfdNotPermitted(syscallError, sysctl: readSysctl("/proc/sys/vm/unprivileged_userfaultfd"))
        default:
            throw .systemCall(syscallError)
        }
    }

    static func handshake(_ fd: Int32, features: UInt64) throws(DirtyLogError) -> UInt64 {
        var request = uffdio_api(api: api, features: features, ioctls: 0)
        if ioctl(fd, rdmig_uffdio_api_request(), &request) != 0 {
            let error = SystemCallError(call: "ioctl(UFFDIO_API)", errno: SystemCall.currentErrno(),
                                        context: "features 0x\(String(features, radix: 16))")
            if error.errno == EINVAL {
                throw .featureMissing("the requested features 0x\(String(features, radix: 16))", kernelFeatures: 0)
            }
            throw .systemCall(error)
        }
        return request.features
    }

    static func readSysctl(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = read(fd, &buffer, buffer.count)
        guard count > 0 else { return nil }
        return String(decoding: buffer.prefix(count), as: UTF8.self).trimmingWhitespace()
    }
}
