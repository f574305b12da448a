import CRDMA
import RdmigSystem

/// An RDMA CM id (`rdma_create_id`, RDMA_PS_TCP: reliable connected, addressed by IP and port).
///
/// Destroy it only after its queue pair (rdma_destroy_id(3)) and after every event about it
/// was acked (`CMEventChannel` acks as it reads), and before its event channel.
struct CMIdentifier: ~Copyable {
    let pointer: UnsafeMutablePointer<rdma_cm_id>

    init(channel: CMEventChannel) throws(TransportError) {
        var created: UnsafeMutablePointer<rdma_cm_id>?
        if rdma_create_id(channel.pointer, &created, nil, RDMA_PS_TCP) != 0 {
            throw VerbsErrorMapping.eventChannelFailure(errno: SystemCall.currentErrno(), call: "rdma_create_id")
        }
        guard let created else {
            throw .system(SystemCallError(call: "rdma_create_id", errno: EINVAL, context: "returned no id"))
        }
        pointer = created
    }

    /// Takes ownership of an id the CM created (a CONNECT_REQUEST's child id).
    init(adopting pointer: UnsafeMutablePointer<rdma_cm_id>) {
        self.pointer = pointer
    }

    deinit {
        rdma_destroy_id(pointer)
    }

    /// The verbs context rdma_cm bound the id to, once the address is bound or resolved.
    var context: UnsafeMutablePointer<ibv_context>? { pointer.pointee.verbs }

    var deviceName: String? {
        guard let device = context?.pointee.device else { return nil }
        return String(cString: ibv_get_device_name(device))
    }

    var localEndpoint: TransportEndpoint? {
        guard let address = rdma_get_local_addr(pointer) else { return nil }
        return SocketAddress.endpoint(from: address)
    }

    var peerEndpoint: TransportEndpoint? {
        guard let address = rdma_get_peer_addr(pointer) else { return nil }
        return SocketAddress.endpoint(from: address)
    }
}
