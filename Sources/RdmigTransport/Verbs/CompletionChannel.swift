#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// A completion event channel (`ibv_create_comp_channel`): the fd event-mode waiting sleeps
/// on. Non-blocking, as in the ibv_get_cq_event(3) example, so a wait can also watch a
/// wake-up fd and honour a timeout. Destroyed after its CQs (EBUSY before).
struct CompletionChannel: ~Copyable {
    let pointer: UnsafeMutablePointer<ibv_comp_channel>

    init(context: UnsafeMutablePointer<ibv_context>) throws(TransportError) {
        SystemCall.setErrno(0)
        guard let channel = ibv_create_comp_channel(context) else {
            throw .system(SystemCallError(call: "ibv_create_comp_channel", errno: VerbsErrorMapping.errnoOrUnknown()))
        }
        let flags = fcntl(channel.pointee.fd, F_GETFL)
        if flags < 0 || fcntl(channel.pointee.fd, F_SETFL, flags | O_NONBLOCK) < 0 {
            let error = SystemCall.currentErrno()
            ibv_destroy_comp_channel(channel)
            throw .system(SystemCallError(call: "fcntl", errno: error, context: "completion channel O_NONBLOCK"))
        }
        pointer = channel
    }

    deinit {
        ibv_destroy_comp_channel(pointer)
    }
}
