import RdmigSystem

/// Why guest memory could not be mapped or pinned. Each case names the region, the sizes
/// and what to do.
public enum GuestMemoryError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidLayout(region: UInt32, String)
    case mapFailed(region: UInt32, backing: String, length: UInt64, SystemCallError)
    case fileTooShort(region: UInt32, path: String, size: UInt64, needed: UInt64)
    case hugePagesUnavailable(region: UInt32, length: UInt64, free: UInt64?, pageSize: UInt64?, SystemCallError)
    case memoryLockFailed(region: UInt32, length: UInt64, limit: UInt64?, SystemCallError)
    case populateFailed(region: UInt32, length: UInt64, SystemCallError)
    case duplicateRegion(UInt32)
    case overlappingRegions(UInt32, UInt32)
    case unknownRegion(UInt32)
    case digestFailed(region: UInt32, SystemCallError)
    case numaBindFailed(region: UInt32, node: Int, String)

    public var description: String {
        switch self {
        case .invalidLayout(let region, let why):
            return "guest memory region \(region) has an invalid layout: \(why)"
        case .mapFailed(let region, let backing, let length, let error):
            return "mapping region \(region) (\(ByteCountText.text(length)) of \(backing)) failed: \(error)"
        case .fileTooShort(let region, let path, let size, let needed):
            return "region \(region): file \(path) holds \(ByteCountText.text(size)) but the region needs "
                + "\(ByteCountText.text(needed)): pass create so rdmig extends it, or give the VMM's full guest-RAM file"
        case .hugePagesUnavailable(let region, let length, let free, let pageSize, let error):
            let have = free.map { "\($0) free huge pages" } ?? "no huge page count in /proc/meminfo"
            let size = pageSize.map { " of \(ByteCountText.text($0))" } ?? ""
            return "region \(region) wants \(ByteCountText.text(length)) in huge pages but the kernel has \(have)\(size) "
                + "(\(error)): reserve them (echo N > /proc/sys/vm/nr_hugepages) or map without huge pages"
        case .memoryLockFailed(let region, let length, let limit, let error):
            let limitText = limit.map { $0 == UInt64.max ? "unlimited" : ByteCountText.text($0) } ?? "unknown"
            return "pinning region \(region) (\(ByteCountText.text(length))) with mlock failed (\(error)): "
                + "the memlock limit (RLIMIT_MEMLOCK) is \(limitText) and pinned guest memory needs at least "
                + "\(ByteCountText.text(length)) more: raise it (ulimit -l unlimited, LimitMEMLOCK=infinity in the "
                + "systemd unit, memlock in /etc/security/limits.conf) or run with CAP_IPC_LOCK"
        case .populateFailed(let region, let length, let error):
            return "faulting in region \(region) (\(ByteCountText.text(length))) before pinning it failed (\(error)): "
                + "the host could not provide that much memory now (see MemAvailable in /proc/meminfo)"
        case .duplicateRegion(let id):
            return "two guest memory regions have id \(id): region ids must be unique"
        case .overlappingRegions(let a, let b):
            return "guest memory regions \(a) and \(b) overlap in guest-physical address space"
        case .unknownRegion(let id):
            return "no guest memory region with id \(id)"
        case .digestFailed(let region, let error):
            return "computing the digest of region \(region) failed: \(error)"
        case .numaBindFailed(let region, let node, let error):
            return "binding region \(region) to NUMA node \(node) failed (\(error)): set [memory] node to a node with memory, or \"auto\""
        }
    }
}
