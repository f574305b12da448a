import CRDMA
import RdmigSystem

/// A completion queue (`ibv_create_cq`) attached to a completion channel.
///
/// ibv_destroy_cq waits until every event taken with ibv_get_cq_event was acked
/// (ibv_get_cq_event(3)); the connection acks its outstanding count before this goes.
struct CompletionQueue: ~Copyable {
    let pointer: UnsafeMutablePointer<ibv_cq>

    init(context: UnsafeMutablePointer<ibv_context>, entries: Int32, channel: UnsafeMutablePointer<ibv_comp_channel>) throws(TransportError) {
        SystemCall.setErrno(0)
        guard let cq = ibv_create_cq(context, entries, nil, channel, 0) else {
            throw .system(SystemCallError(
                call: "ibv_create_cq", errno: VerbsErrorMapping.errnoOrUnknown(), context: "\(entries) entries"))
        }
        pointer = cq
    }

    deinit {
        ibv_destroy_cq(pointer)
    }
}
