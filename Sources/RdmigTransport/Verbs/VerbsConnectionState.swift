import CRDMA
import RdmigSystem
import Synchronization

/// What the threads around one verbs connection share: its failure, whether posting is
/// still allowed, and the right to call rdma_disconnect on its id.
///
/// The poster and poller read `isStopped` (one atomic load) on every call; everything else
/// here runs only when something went wrong or the connection closes.
final class VerbsConnectionState: Sendable {
    let peer: TransportEndpoint
    let deviceName: String
    /// Rung on failure and close, so a thread sleeping in `waitForCompletions` wakes up.
    let wakeup: Doorbell

    /// Set once posting must stop: after a failure or a local close.
    let isStopped = Atomic<Bool>(false)
    let isClosedLocally = Atomic<Bool>(false)
    private let failureStorage = Mutex<TransportError?>(nil)

    /// The CM id while it exists. rdma_disconnect may come from the monitor thread (peer
    /// disconnected), the poller (an error completion), the async-event reader of another
    /// connection (device fatal), or close(); holding this lock across the call and clearing
    /// it before the id is destroyed makes each of those safe against teardown.
    private let identifier: Mutex<IdentifierHandle?>
    private let disconnected = Atomic<Bool>(false)

    struct IdentifierHandle: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<rdma_cm_id>
    }

    init(peer: TransportEndpoint, deviceName: String, identifier: UnsafeMutablePointer<rdma_cm_id>) throws(TransportError) {
        self.peer = peer
        self.deviceName = deviceName
        self.identifier = Mutex(IdentifierHandle(pointer: identifier))
        do {
            self.wakeup = try Doorbell()
        } catch {
            throw .system(error)
        }
    }

    var failure: TransportError? { failureStorage.withLock { $0 } }

    /// Records the first failure (later ones are consequences), stops posting, disconnects
    /// so the peer learns and outstanding work flushes, and wakes a sleeping poller.
    func fail(_ error: TransportError) {
        let recorded = failureStorage.withLock { current -> Bool in
            guard current == nil, !isClosedLocally.load(ordering: .acquiring) else { return false }
            current = error
            return true
        }
        isStopped.store(true, ordering: .releasing)
        if recorded { disconnect() }
        wakeup.forceRing()
    }

    /// A local, orderly close. Returns false when it was already closed.
    @discardableResult
    func closeLocally() -> Bool {
        guard !isClosedLocally.exchange(true, ordering: .acquiringAndReleasing) else { return false }
        isStopped.store(true, ordering: .releasing)
        disconnect()
        wakeup.forceRing()
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
