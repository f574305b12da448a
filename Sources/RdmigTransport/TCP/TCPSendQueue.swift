import Synchronization

/// The send queue of one `tcp` connection: a fixed ring of work requests with one writer per
/// cursor, so that posting, transmitting, acknowledging and polling never take a lock.
///
/// Sequences start at 1 and only grow; the entry for sequence `s` lives in slot `s & mask`.
/// - `posted` (application thread): the last WR posted.
/// - transmitted (sender thread, kept in the sender itself): the last WR put on the wire.
/// - `retired` (receiver thread): the last WR the peer acknowledged as placed.
/// - `freed` (polling thread): the last WR whose slot may be reused.
///
/// As in verbs providers (mlx5 advances the SQ tail in poll_cq), a slot is freed when its
/// completion is polled, and an unsignalled WR's slot only when a later signalled WR's
/// completion is polled. So the completion queue can never hold more send completions than
/// the send queue has slots.
final class TCPSendQueue: TCPRing<TCPSendRequest>, @unchecked Sendable {
    typealias Entry = TCPSendRequest

    /// Receiver thread: the last WR the peer acknowledged as placed.
    let retired = Atomic<UInt64>(0)

    init(depth: Int) {
        super.init(depth: depth, empty: TCPSendRequest())
    }
}

enum TCPSendOpcode: UInt8 {
    case write
    case send
}

struct TCPSendRequest {
    var id: UInt64 = 0
    var localAddress: UInt64 = 0
    /// The registration the payload is read from, looked up again before it is read.
    var localKey: UInt32 = 0
    var remoteAddress: UInt64 = 0
    var length: UInt32 = 0
    var remoteKey: UInt32 = 0
    var immediate: UInt32 = 0
    var opcode: TCPSendOpcode = .write
    var hasImmediate = false
    var signaled = false

    /// SEND and WRITE_WITH_IMM consume one of the peer's posted receives.
    @inline(__always) var consumesReceive: Bool { opcode == .send || hasImmediate }
}
