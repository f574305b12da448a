import RdmigSystem

/// Why a buffer pool, a placement or a topology query could not be done, said so that an
/// operator knows what to change.
public enum MemoryError: Error, CustomStringConvertible, Equatable, Sendable {
    /// A NUMA node was asked for that this machine does not have (or that has no memory).
    case noSuchNode(requested: Int, existing: [Int])
    /// `mlock` refused because of RLIMIT_MEMLOCK. `limit` nil means the soft limit is
    /// unlimited (then the kernel refused for another reason, e.g. memory cgroup).
    case memlockLimit(requested: UInt64, limit: UInt64?, alreadyLocked: UInt64, errno: Int32)
    /// A CPU was named that does not exist or that this process may not run on.
    case cpuNotAllowed(requested: [Int32], allowed: [Int32])
    /// A thread did not end up on the CPUs it was placed on (the kernel's answer differs).
    case threadNotPinned(name: String, requested: [Int32], actual: [Int32])
    /// The pool's shape is impossible (slab size, pool size).
    case invalidPoolGeometry(String)
    /// An RDMA device or interface name that sysfs and hwloc do not know.
    case noSuchDevice(String, known: [String])
    /// hwloc could not build or load a topology.
    case topologyUnavailable(String)
    /// A system call failed (mmap, mbind, madvise, ...).
    case system(SystemCallError)

    public var description: String {
        switch self {
        case .noSuchNode(let requested, let existing):
            return "NUMA node \(requested) does not exist: this machine has \(Self.nodeList(existing)); "
                + "set the node to auto or to one of them"
        case .memlockLimit(let requested, let limit, let alreadyLocked, _):
            let fix = "raise LimitMEMLOCK (systemd) / `ulimit -l`, or run with CAP_IPC_LOCK"
            let pool = ByteCount(requested).humanReadable
            guard let limit else {
                return "mlock of the \(pool) pool was refused although the memlock limit is unlimited "
                    + "(memory cgroup limit or out of memory?); \(fix)"
            }
            let limitText = ByteCount(limit).humanReadable
            if alreadyLocked > 0 {
                return "memlock limit \(limitText) with \(ByteCount(alreadyLocked).humanReadable) already locked "
                    + "is too small for the \(pool) pool: \(fix)"
            }
            return "memlock limit \(limitText) is below the \(pool) pool: \(fix)"
        case .cpuNotAllowed(let requested, let allowed):
            return "CPUs \(CPUList.format(requested)) are not available to this process: it may run on "
                + "\(CPUList.format(allowed)); set the thread CPUs to auto or to CPUs from that list"
        case .threadNotPinned(let name, let requested, let actual):
            return "thread \(name) was to run on CPUs \(CPUList.format(requested)) but the kernel reports "
                + "\(CPUList.format(actual)) (sched_getaffinity); check the cgroup cpuset of the service"
        case .invalidPoolGeometry(let text):
            return text
        case .noSuchDevice(let name, let known):
            let list = known.isEmpty ? "none" : known.joined(separator: ", ")
            return "no network interface or RDMA device named '\(name)' (known: \(list))"
        case .topologyUnavailable(let text):
            return text
        case .system(let error):
            return error.description
        }
    }

    static func nodeList(_ nodes: [Int]) -> String {
        switch nodes.count {
        case 0: return "no NUMA node with memory"
        case 1: return "only node \(nodes[0])"
        default: return "nodes " + nodes.map(String.init).joined(separator: ", ")
        }
    }
}
