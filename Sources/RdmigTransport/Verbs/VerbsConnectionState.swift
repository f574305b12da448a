import CRDMA
import RdmigSystem
import Synchronization

/// What the threads around one verbs connection share: its failure, whether posting is
/// still allowed, and the right to call rdma_disconnect on its id.
///
/// The poster reads `isStopped` (one atomic load) on every post; everything else here runs
/// only when something went wrong or the connection closes.
///
/// Failures come from several threads, in no guaranteed order, so each is either
/// *definitive* (an error work completion or an async event: the device says what went
/// wrong) or *provisional* (a CM DISCONNECTED, or an error state inferred from a flush): a
/// definitive failure replaces a provisional one, otherwise the first one stays. This keeps,
/// for example, "remote access refused" on a writer whose peer disconnected a moment after
/// refusing the write, even when the DISCONNECTED is handled before the completion is polled.
final class VerbsConnectionState: Sendable {
    let peer: TransportEndpoint
    let deviceName: String

    /// Set once posting must stop: after a failure or a local close.
    let isStopped = Atomic<Bool>(false)
    let isClosedLocally = Atomic<Bool>(false)
    private let failureStorage = Mutex<(error: TransportError, definitive: Bool)?>(nil)

    /// The CM id while it exists. rdma_disconnect may come from the monitor thread (peer
    /// disconnected), the poller (an error completion), the async-event reader of another
    /// connection (device fatal), or close(); holding this lock across the call and clearing
    /// it before the id is destroyed makes each of those safe against teardown.
    private let identifier: Mutex<IdentifierHandle?>
    private let disconnected = Atomic<Bool>(false)

    struct IdentifierHandle: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<rdma_cm_id>
    }

    init(peer: TransportEndpoint, deviceName: String, identifier: UnsafeMutablePointer<rdma_cm_id>) {
        self.peer = peer
        self.deviceName = deviceName
        self.identifier = Mutex(IdentifierHandle(pointer: identifier))
    }

    var failure: TransportError? { failureStorage.withLock { $0?.error } }

    /// Whether this side already called rdma_disconnect (so an error state is its own doing).
    var hasDisconnected: Bool { disconnected.load(ordering: .acquiring) }

    /// Records a failure (see the type's rules), stops posting, and disconnects so the peer
    /// learns and outstanding work flushes. Ignored after a local close.
    func fail(_ error: TransportError, definitive: Bool) {
        guard !isClosedLocally.load(ordering: .acquiring) else { return }
        failureStorage.withLock { current in
            if current == nil || (definitive && current?.definitive == false) {
                current = (error, definitive)
            }
        }
        isStopped.store(true, ordering: .releasing)
        disconnect()
    }

    /// A local, orderly close. Returns false when it was already closed.
    @discardableResult
    func closeLocally() -> Bool {
        guard !isClosedLocally.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        isStopped.store(true, ordering: .releasing)
        disconnect()
        return true
    }

    /// rdma_disconnect once: moves the QP to the error state, which flushes every posted
    /// work request to the CQ, and sends the peer a DREQ (rdma_disconnect(3)).
    func disconnect() {
        guard !disconnected.exchange(true, ordering: .acquiringAndReleasing) else { return }
        identifier.withLock { handle in
            guard let handle else { return }
            _ = rdma_disconnect(handle.pointer)
        }
    }

    /// Called by the owner right before the id is destroyed.
    func retireIdentifier() {
        identifier.withLock { $0 = nil }
    }

    /// The error a post gets once the connection has stopped.
    func closedError() -> TransportError {
        if let failure {
            return .connectionClosed(detail: failure.description)
        }
        return .connectionClosed(detail: "this side closed the connection to \(peer)")
    }
}
