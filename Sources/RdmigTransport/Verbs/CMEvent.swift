import CRDMA

/// A copied RDMA CM event: the fields rdmig acts on, valid after the event was acked.
struct CMEvent {
    let type: rdma_cm_event_type
    /// The event's status: a negative errno for ADDR/ROUTE/CONNECT errors and UNREACHABLE,
    /// the CM reject reason for REJECTED.
    let status: Int32
    /// The id the event is about; for CONNECT_REQUEST the new child id.
    let id: UnsafeMutablePointer<rdma_cm_id>?
    let listenID: UnsafeMutablePointer<rdma_cm_id>?
    let privateData: [UInt8]
    let initiatorDepth: UInt8
    let responderResources: UInt8

    init(_ event: rdma_cm_event) {
        type = event.event
        status = event.status
        id = event.id
        listenID = event.listen_id
        let connection = event.param.conn
        if let data = connection.private_data, connection.private_data_len > 0 {
            privateData = Array(UnsafeRawBufferPointer(start: data, count: Int(connection.private_data_len)))
        } else {
            privateData = []
        }
        initiatorDepth = connection.initiator_depth
        responderResources = connection.responder_resources
    }

    /// An event as the CM would report it, for mapping tests.
    init(type: rdma_cm_event_type, status: Int32, privateData: [UInt8] = []) {
        self.type = type
        self.status = status
        self.id = nil
        self.listenID = nil
        self.privateData = privateData
        self.initiatorDepth = 0
        self.responderResources = 0
    }

    var name: String { String(cString: rdma_event_str(type)) }
}
