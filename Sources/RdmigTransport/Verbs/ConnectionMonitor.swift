#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// The thread that watches one established connection for what does not come through the
/// completion queue: RDMA CM events on its channel (DISCONNECTED, DEVICE_REMOVAL,
/// TIMEWAIT_EXIT, ADDR_CHANGE) and the device's async events. Like rping's cm_thread, one
/// per connection; it sleeps in poll(2) and costs nothing while the connection is healthy.
///
/// It holds the channel and the shared state, never the connection, so the connection's
/// deinit can stop and join it before releasing the id and the channel.
final class ConnectionMonitor: Sendable {
    private let stopBell: Doorbell
    private let thread: SystemThread

    init(
        channel: CMEventChannel, context: UnsafeMutablePointer<ibv_context>, queuePair: UnsafeMutablePointer<ibv_qp>,
        state: VerbsConnectionState, cpus: [Int32]
    ) throws(TransportError) {
        let stopBell: Doorbell
        do {
            stopBell = try Doorbell()
        } catch {
            throw .system(error)
        }
        self.stopBell = stopBell
        let asyncDescriptor = context.pointee.async_fd
        let handles = Handles(context: context, queuePair: queuePair)
        do {
            thread = try SystemThread(name: "rdmig-verbs-cm", cpus: cpus) {
                ConnectionMonitor.run(channel: channel, handles: handles, asyncDescriptor: asyncDescriptor, state: state, stop: stopBell)
            }
        } catch {
            throw .system(error)
        }
    }

    /// The device context and the QP; both outlive this thread (the connection stops it
    /// before it releases them).
    struct Handles: @unchecked Sendable {
        let context: UnsafeMutablePointer<ibv_context>
        let queuePair: UnsafeMutablePointer<ibv_qp>
    }

    /// Stops the thread and waits for it; after this nothing reads the channel.
    func stop() {
        stopBell.forceRing()
        thread.join()
    }

    private static func run(
        channel: CMEventChannel, handles: Handles, asyncDescriptor: Int32,
        state: VerbsConnectionState, stop: Doorbell
    ) {
        var descriptors = [
            pollfd(fd: channel.fileDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: asyncDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: stop.fileDescriptor, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            for index in descriptors.indices { descriptors[index].revents = 0 }
            let ready = poll(&descriptors, nfds_t(descriptors.count), -1)
            if ready < 0 {
                if SystemCall.currentErrno() == EINTR { continue }
                state.fail(.system(SystemCallError(call: "poll", errno: SystemCall.currentErrno(), context: "verbs connection monitor")), definitive: true)
                return
            }
            if descriptors[2].revents != 0 { return }
            if descriptors[1].revents != 0 {
                AsyncEventRouter.shared.drain(handles.context)
            }
            if descriptors[0].revents != 0 {
                do {
                    while let event = try channel.nextEvent() {
                        handle(event, state: state, queuePair: handles.queuePair)
                    }
                } catch {
                    state.fail(error, definitive: true)
                    return
                }
            }
        }
    }

    static func handle(_ event: CMEvent, state: VerbsConnectionState, queuePair: UnsafeMutablePointer<ibv_qp>) {
        switch event.type {
        case RDMA_CM_EVENT_DISCONNECTED:
            // Also reported after a local rdma_disconnect; `fail` ignores it then. Either
            // way our side must disconnect too so the QP flushes (rdma_disconnect(3):
            // "should be called by both the client and server side").
            if !state.hasDisconnected, queuePairState(queuePair) == IBV_QPS_ERR {
                state.fail(VerbsErrorMapping.responderRefusal(peer: state.peer, device: state.deviceName), definitive: false)
            } else {
                state.fail(.peerDisconnected(state.peer, detail: "the peer closed the connection (RDMA_CM_EVENT_DISCONNECTED)"), definitive: false)
            }
            state.disconnect()
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
            state.fail(.deviceUnavailable(reason: "\(state.deviceName) was removed (RDMA_CM_EVENT_DEVICE_REMOVAL)"), definitive: true)
        case RDMA_CM_EVENT_TIMEWAIT_EXIT, RDMA_CM_EVENT_ADDR_CHANGE, RDMA_CM_EVENT_ESTABLISHED:
            // TIMEWAIT_EXIT only says the QP could be reused, and rdmig never reuses one;
            // ADDR_CHANGE concerns new connections, not this established one.
            break
        default:
            state.fail(.protocolViolation(detail: "unexpected RDMA CM event \(event.name) on an established connection"), definitive: false)
        }
    }

    /// The QP's current state (ibv_query_qp), or nil when it cannot be read.
    static func queuePairState(_ queuePair: UnsafeMutablePointer<ibv_qp>) -> ibv_qp_state? {
        var attributes = ibv_qp_attr()
        var initial = ibv_qp_init_attr()
        guard ibv_query_qp(queuePair, &attributes, Int32(IBV_QP_STATE.rawValue), &initial) == 0 else { return nil }
        return attributes.qp_state
    }
}
