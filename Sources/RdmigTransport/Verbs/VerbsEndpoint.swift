import CRDMA

/// One side of a verbs connection as an owner of kernel objects: its CM event channel, its
/// CM id, and the verbs resources on that id, released id-resources first, then the id,
/// then the channel (rdma_destroy_id(3): free the QP before the id; an id must go before
/// its channel).
///
/// Filled step by step while connecting or accepting; if a step throws, dropping the
/// endpoint releases what exists in that order. On success the connection owns it.
final class VerbsEndpoint: @unchecked Sendable {
    /// The channel the id's events arrive on; replaced when an accepted id is migrated from
    /// the listener's channel to its own.
    var channel: CMEventChannel
    var identifier: CMIdentifier?
    var resources: QueuePairResources?

    init(channel: CMEventChannel) {
        self.channel = channel
    }

    deinit {
        resources = nil
        identifier = nil
    }

    var identifierPointer: UnsafeMutablePointer<rdma_cm_id>? {
        identifier?.pointer
    }
}
