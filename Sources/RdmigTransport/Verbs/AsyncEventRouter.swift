#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import Synchronization

/// Delivers a device's asynchronous events (ibv_get_async_event(3): QP access errors, fatal
/// QP/CQ errors, device fatal) to the connection whose QP or CQ they name.
///
/// A verbs context is shared by every connection of the process on that device (librdmacm
/// opens each device once), so its async fd is too: each connection's monitor thread watches
/// it and whichever reads an event routes it here. The event is acked after routing, and
/// ibv_destroy_qp / ibv_destroy_cq wait for that ack, which is what keeps a routed
/// connection's id alive while its failure is recorded.
final class AsyncEventRouter: Sendable {
    static let shared = AsyncEventRouter()

    struct Route {
        let state: VerbsConnectionState
        let completionQueue: UInt
        let context: UInt
    }

    private let routes = Mutex<[UInt: Route]>([:])
    private let nonBlockingContexts = Mutex<Set<UInt>>([])

    func register(
        queuePair: UnsafeMutablePointer<ibv_qp>, completionQueue: UnsafeMutablePointer<ibv_cq>,
        context: UnsafeMutablePointer<ibv_context>, state: VerbsConnectionState
    ) {
        makeNonBlocking(context)
        routes.withLock {
            $0[UInt(bitPattern: queuePair)] = Route(
                state: state, completionQueue: UInt(bitPattern: completionQueue), context: UInt(bitPattern: context))
        }
    }

    func unregister(queuePair: UnsafeMutablePointer<ibv_qp>) {
        _ = routes.withLock { $0.removeValue(forKey: UInt(bitPattern: queuePair)) }
    }

    /// The async fd must not block a monitor thread that lost the race for an event
    /// (ibv_get_async_event(3) shows O_NONBLOCK for this).
    private func makeNonBlocking(_ context: UnsafeMutablePointer<ibv_context>) {
        let key = UInt(bitPattern: context)
        let first = nonBlockingContexts.withLock { $0.insert(key).inserted }
        guard first else { return }
        let descriptor = context.pointee.async_fd
        let flags = fcntl(descriptor, F_GETFL)
        if flags >= 0 { _ = fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) }
    }

    /// Reads every queued async event of `context`, routes each, acks each.
    func drain(_ context: UnsafeMutablePointer<ibv_context>) {
        var event = ibv_async_event()
        while ibv_get_async_event(context, &event) == 0 {
            route(event, context: context)
            ibv_ack_async_event(&event)
        }
    }

    private func route(_ event: ibv_async_event, context: UnsafeMutablePointer<ibv_context>) {
        let targets: [VerbsConnectionState] = routes.withLock { routes in
            switch event.event_type {
            case IBV_EVENT_QP_FATAL, IBV_EVENT_QP_REQ_ERR, IBV_EVENT_QP_ACCESS_ERR:
                guard let qp = event.element.qp else { return [] }
                return routes[UInt(bitPattern: qp)].map { [$0.state] } ?? []
            case IBV_EVENT_CQ_ERR:
                guard let cq = event.element.cq else { return [] }
                return routes.values.filter { $0.completionQueue == UInt(bitPattern: cq) }.map(\.state)
            case IBV_EVENT_DEVICE_FATAL:
                return routes.values.filter { $0.context == UInt(bitPattern: context) }.map(\.state)
            default:
                return []
            }
        }
        for state in targets {
            if let failure = VerbsErrorMapping.failure(for: event.event_type, device: state.deviceName, peer: state.peer) {
                state.fail(failure, definitive: true)
            }
        }
    }
}
