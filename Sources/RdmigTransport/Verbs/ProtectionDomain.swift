import CRDMA
import RdmigSystem

/// A protection domain (`ibv_alloc_pd`): the queue pair and every memory region of one
/// connection belong to it, so a key from another connection is refused by the device.
/// Deallocate it last, after the QP and all MRs (ibv_dealloc_pd fails with EBUSY before).
struct ProtectionDomain: ~Copyable {
    let pointer: UnsafeMutablePointer<ibv_pd>

    init(context: UnsafeMutablePointer<ibv_context>) throws(TransportError) {
        SystemCall.setErrno(0)
        guard let pd = ibv_alloc_pd(context) else {
            throw .system(SystemCallError(call: "ibv_alloc_pd", errno: VerbsErrorMapping.errnoOrUnknown()))
        }
        pointer = pd
    }

    deinit {
        ibv_dealloc_pd(pointer)
    }
}
