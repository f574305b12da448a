#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// A registered memory region (`ibv_reg_mr`): pinned, with a local key for work requests
/// and a remote key for exported windows. Deregistered before its protection domain.
struct MemoryRegion: ~Copyable, @unchecked Sendable {
    let pointer: UnsafeMutablePointer<ibv_mr>

    /// `flags` are ibv_access_flags. The `ibv_reg_mr` macro picks between two symbols; this
    /// calls `ibv_reg_mr_iova2` directly, which clears optional flags such as
    /// IBV_ACCESS_RELAXED_ORDERING when the kernel cannot take them (rdma-core
    /// libibverbs/verbs.c), so asking for relaxed ordering is always safe.
    init(protectionDomain: UnsafeMutablePointer<ibv_pd>, memory: UnsafeMutableRawBufferPointer, flags: UInt32) throws(TransportError) {
        guard let base = memory.baseAddress else {
            throw .invalidWorkRequest(detail: "cannot register an empty buffer")
        }
        let iova = UInt64(UInt(bitPattern: base))
        SystemCall.setErrno(0)
        if let mr = ibv_reg_mr_iova2(protectionDomain, base, memory.count, iova, flags) {
            pointer = mr
            return
        }
        var error = VerbsErrorMapping.errnoOrUnknown()
        // A provider that checks access bits strictly may refuse relaxed ordering even though
        // the kernel passed it on; it is only a hint, so register without it then.
        let relaxed = IBV_ACCESS_RELAXED_ORDERING.rawValue
        if flags & relaxed != 0 && (error == EINVAL || error == EOPNOTSUPP) {
            SystemCall.setErrno(0)
            if let mr = ibv_reg_mr_iova2(protectionDomain, base, memory.count, iova, flags & ~relaxed) {
                pointer = mr
                return
            }
            error = VerbsErrorMapping.errnoOrUnknown()
        }
        throw VerbsErrorMapping.registrationFailure(errno: error, length: memory.count)
    }

    deinit {
        ibv_dereg_mr(pointer)
    }

    var localKey: UInt32 { pointer.pointee.lkey }
    var remoteKey: UInt32 { pointer.pointee.rkey }

    /// Deregisters now and reports a failure (deinit cannot).
    consuming func deregister() throws(TransportError) {
        let mr = pointer
        discard self
        let result = ibv_dereg_mr(mr)
        if result != 0 {
            throw .system(SystemCallError(call: "ibv_dereg_mr", errno: result))
        }
    }
}
