#if canImport(Glibc)
import Glibc
#endif
import CNUMA
import RdmigSystem

/// A range of memory's NUMA placement: bound to a node before its pages are faulted in, and
/// read back (the policy in force, the node each page is on) to check where memory landed.
public enum NUMAPolicy {
    /// `mbind(MPOL_BIND)` of `length` bytes at `address` to `node`: pages faulted from now on
    /// come from that node (strictly: none from another).
    public static func bind(_ address: UnsafeMutableRawPointer, length: Int, to node: Int) throws(MemoryError) {
        let bitsPerWord = UInt.bitWidth
        var mask = [UInt](repeating: 0, count: node / bitsPerWord + 1)
        mask[node / bitsPerWord] |= 1 << UInt(node % bitsPerWord)
        // maxnode is the number of bits plus one: the kernel's get_nodes() (mm/mempolicy.c)
        // drops the last bit, and libnuma passes size + 1 for the same reason.
        let maxNode = UInt(mask.count * bitsPerWord + 1)
        let result = mask.withUnsafeBufferPointer {
            mbind(address, UInt(length), MPOL_BIND, $0.baseAddress, maxNode, UInt32(MPOL_MF_STRICT))
        }
        if result != 0 {
            throw .system(SystemCallError(
                call: "mbind", errno: SystemCall.currentErrno(), context: "MPOL_BIND to NUMA node \(node)"))
        }
    }

    /// The policy in force at `address` (`get_mempolicy(MPOL_F_ADDR)`): its mode and nodes.
    public static func policy(at address: UnsafeRawPointer) throws(MemoryError) -> (mode: Int32, nodes: [Int]) {
        var mode: Int32 = 0
        var mask = [UInt](repeating: 0, count: 16)
        let bits = UInt(mask.count * UInt.bitWidth)
        let result = mask.withUnsafeMutableBufferPointer {
            get_mempolicy(&mode, $0.baseAddress, bits, UnsafeMutableRawPointer(mutating: address), UInt32(MPOL_F_ADDR))
        }
        if result != 0 {
            throw .system(SystemCallError(call: "get_mempolicy", errno: SystemCall.currentErrno(), context: "MPOL_F_ADDR"))
        }
        var nodes: [Int] = []
        for (word, value) in mask.enumerated() where value != 0 {
            for bit in 0..<UInt.bitWidth where value & (1 << UInt(bit)) != 0 { nodes.append(word * UInt.bitWidth + bit) }
        }
        return (mode, nodes)
    }

    /// The node each page at `pages` is on (`move_pages` without moving: a negative errno for
    /// a page not faulted in).
    public static func nodes(of pages: [UnsafeRawPointer]) throws(MemoryError) -> [Int32] {
        var addresses: [UnsafeMutableRawPointer?] = pages.map { UnsafeMutableRawPointer(mutating: $0) }
        var status = [Int32](repeating: 0, count: pages.count)
        let result = move_pages(0, UInt(pages.count), &addresses, nil, &status, 0)
        if result != 0 {
            throw .system(SystemCallError(call: "move_pages", errno: SystemCall.currentErrno(), context: "\(pages.count) pages"))
        }
        return status
    }
}

/// Locking memory without faulting it in.
public enum MemoryLock {
    /// `mlock2(MLOCK_ONFAULT)` of `length` bytes at `address`: the kernel checks RLIMIT_MEMLOCK
    /// for the whole range now and locks each page as it is first touched. False when this
    /// libc has no mlock2 (the caller then faults in and locks everything).
    public static func onFault(_ address: UnsafeMutableRawPointer, length: Int) throws(MemoryError) -> Bool {
        guard let mlock2 = Self.mlock2 else { return false }
        guard mlock2(address, length, Self.mlockOnFault) == 0 else {
            let error = SystemCall.currentErrno()
            if error == ENOMEM || error == EPERM {
                let limit = MemlockLimit.current()
                throw .memlockLimit(requested: UInt64(length), limit: limit.soft, alreadyLocked: limit.locked, errno: error)
            }
            throw .system(SystemCallError(call: "mlock2", errno: error, context: "MLOCK_ONFAULT"))
        }
        return true
    }

    /// MLOCK_ONFAULT from include/uapi/asm-generic/mman-common.h.
    private static let mlockOnFault: UInt32 = 1

    /// glibc exports mlock2 since 2.27 but declares it only under _GNU_SOURCE, which the
    /// Glibc module Swift imports is not built with; the symbol is looked up once.
    private static let mlock2: (@convention(c) (UnsafeRawPointer?, Int, UInt32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mlock2") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeRawPointer?, Int, UInt32) -> Int32).self)
    }()
}
