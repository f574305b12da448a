import CRDMA
import RdmigSystem

/// A reliable-connected queue pair created on an RDMA CM id (`rdma_create_qp`), so the CM
/// moves it through INIT/RTR/RTS during connect and accept, as rping does.
/// Destroyed first of a connection's verbs objects (`rdma_destroy_qp`), before its CQ.
struct QueuePair: ~Copyable {
    let identifier: UnsafeMutablePointer<rdma_cm_id>
    let pointer: UnsafeMutablePointer<ibv_qp>
    /// The capacities the provider granted (at least what was asked).
    let capabilities: ibv_qp_cap

    init(
        identifier: UnsafeMutablePointer<rdma_cm_id>, protectionDomain: UnsafeMutablePointer<ibv_pd>,
        completionQueue: UnsafeMutablePointer<ibv_cq>, sendDepth: Int, receiveDepth: Int
    ) throws(TransportError) {
        var attributes = ibv_qp_init_attr()
        attributes.qp_type = IBV_QPT_RC
        attributes.send_cq = completionQueue
        attributes.recv_cq = completionQueue
        attributes.cap.max_send_wr = UInt32(sendDepth)
        attributes.cap.max_recv_wr = UInt32(receiveDepth)
        attributes.cap.max_send_sge = 1
        attributes.cap.max_recv_sge = 1
        // Selective signalling (sq_sig_all = 0, ibv_create_qp(3)): only WRs flagged
        // IBV_SEND_SIGNALED complete on success, as perftest signals one WR in cq_mod
        // (ctx_set_send_reg_wqes in src/perftest_resources.c).
        attributes.sq_sig_all = 0
        if rdma_create_qp(identifier, protectionDomain, &attributes) != 0 {
            throw .system(SystemCallError(
                call: "rdma_create_qp", errno: SystemCall.currentErrno(),
                context: "RC QP, send depth \(sendDepth), receive depth \(receiveDepth)"))
        }
        guard let qp = identifier.pointee.qp else {
            throw .system(SystemCallError(call: "rdma_create_qp", errno: EINVAL, context: "no QP on the id"))
        }
        self.identifier = identifier
        self.pointer = qp
        self.capabilities = attributes.cap
    }

    deinit {
        rdma_destroy_qp(identifier)
    }
}
