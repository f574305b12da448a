import Synchronization

/// A receive posted on one `tcp` connection.
/// It names its registration by key, and the receiver places a payload only after finding
/// that registration still live, so a receive can never outlive the memory it points to (as on
/// a verbs device, whose receive fails with a protection error once its MR is gone).
struct TCPPostedReceive {
    var id: UInt64 = 0
    var address: UInt64 = 0
    var length: Int = 0
    var localKey: UInt32 = 0
}

/// The receive queue of one `tcp` connection: posted receive buffers, consumed in order by
/// incoming SENDs and WRITE_WITH_IMMs. One writer per cursor, no locks:
/// - `posted` (application thread): receives posted so far; the sender thread advertises it
///   to the peer as its receive credits (see `TCPFrameHeader`, ACK) when they are due
///   (`TCPQueuePair.creditAdvertisementDue`).
/// - `consumed` (receiver thread): receives used by incoming messages.
/// - `freed` (polling thread): receives whose completion was polled; their slots are reused.
final class TCPReceiveQueue: TCPRing<TCPPostedReceive>, @unchecked Sendable {
    typealias Entry = TCPPostedReceive

    let consumed = Atomic<UInt64>(0)

    init(depth: Int) {
        super.init(depth: depth, empty: TCPPostedReceive())
    }
}
