import RdmigSystem
#if canImport(Glibc)
import Glibc
#endif

/// Why dirty tracking could not start or continue. Each case says what failed and what to do.
public enum DirtyLogError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The kernel has no userfaultfd (ENOSYS: CONFIG_USERFAULTFD off, or a seccomp filter).
    case userfaultfdUnavailable(SystemCallError)
    /// userfaultfd exists but this process may not use it (EPERM/EACCES).
    case userfaultfdNotPermitted(SystemCallError, sysctl: String?)
    /// The kernel's userfaultfd lacks a feature tracking needs (write-protect faults).
    case featureMissing(String, kernelFeatures: UInt64)
    /// The region's memory type cannot be write-protected by this kernel (EINVAL on
    /// UFFDIO_REGISTER with MODE_WP): for example a MAP_SHARED file on ext4/xfs.
    case memoryTypeNotSupported(region: UInt32, backing: String, SystemCallError)
    /// Another failing call (UFFDIO_WRITEPROTECT, read on the descriptor, thread start).
    case systemCall(SystemCallError)
    /// The fault-handler thread stopped on an error; tracking is no longer complete.
    case handlerFailed(SystemCallError)
    /// The log was used before `start()` or after `stop()`.
    case notTracking

    public var description: String {
        switch self {
        case .userfaultfdUnavailable(let error):
            return "userfaultfd is not available (\(error)): the kernel was built without "
                + "CONFIG_USERFAULTFD or a seccomp filter blocks it; use the synthetic guest's own dirty log "
                + "(dirty-log = \"synthetic\") or a kernel with userfaultfd write-protect (Linux 5.7+)"
        case .userfaultfdNotPermitted(let error, let sysctl):
            let setting = sysctl.map { " (vm.unprivileged_userfaultfd = \($0))" } ?? ""
            return "userfaultfd is not permitted for this process (\(error))\(setting): run as root or with "
                + "CAP_SYS_PTRACE, set sysctl vm.unprivileged_userfaultfd=1, or grant read/write access to "
                + "/dev/userfaultfd (Linux 6.1+)"
        case .featureMissing(let feature, let features):
            return "this kernel's userfaultfd lacks \(feature) (features 0x\(String(features, radix: 16))): "
                + "write-protect dirty tracking needs Linux 5.7+ for anonymous memory and 5.19+ for shmem/memfd"
        case .memoryTypeNotSupported(let region, let backing, let error):
            return "region \(region) (\(backing)) cannot be write-protected with userfaultfd (\(error)): "
                + "this kernel supports write-protect on anonymous memory and on shmem (memfd, files in /dev/shm "
                + "or tmpfs) and hugetlbfs, not on files of a disk file system; back guest memory with memfd or "
                + "a file on tmpfs, or use the synthetic dirty log"
        case .systemCall(let error):
            return "dirty tracking failed: \(error)"
        case .handlerFailed(let error):
            return "the userfaultfd fault handler stopped (\(error)): writes since then are not tracked; "
                + "abort this migration and resume the guest"
        case .notTracking:
            return "dirty log used before start() or after stop()"
        }
    }
}
