#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import RdmigSystem

/// An RDMA CM event channel (`rdma_create_event_channel`): the fd on which connection
/// events for its ids arrive.
///
/// A final class because the connection's monitor thread reads it while the connection owns
/// it; the ids on it must be destroyed before it is (the owner's teardown order guarantees
/// that). Its fd is non-blocking (rdma_get_cm_event(3) allows it), so waiting is a `poll`
/// with a deadline, which is how connect and accept get their timeouts.
final class CMEventChannel: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<rdma_event_channel>

    init() throws(TransportError) {
        SystemCall.setErrno(0)
        guard let channel = rdma_create_event_channel() else {
            throw VerbsErrorMapping.eventChannelFailure(errno: SystemCall.currentErrno())
        }
        let descriptor = channel.pointee.fd
        let flags = fcntl(descriptor, F_GETFL)
        if flags < 0 || fcntl(descriptor, F_SETFL, flags | O_NONBLOCK) < 0 {
            let error = SystemCall.currentErrno()
            rdma_destroy_event_channel(channel)
            throw .system(SystemCallError(call: "fcntl", errno: error, context: "rdma_cm event channel O_NONBLOCK"))
        }
        pointer = channel
    }

    deinit {
        rdma_destroy_event_channel(pointer)
    }

    var fileDescriptor: Int32 { pointer.pointee.fd }

    /// The next queued event, already acknowledged, or nil when none is queued.
    ///
    /// Every event is copied and acked at once (rdma_ack_cm_event(3): one ack per event;
    /// rdma_destroy_id and rdma_migrate_id block until the id's events are acked), so no
    /// caller can hold an event across a destroy and deadlock it.
    func nextEvent() throws(TransportError) -> CMEvent? {
        var raw: UnsafeMutablePointer<rdma_cm_event>?
        while true {
            if rdma_get_cm_event(pointer, &raw) == 0 { break }
            let error = SystemCall.currentErrno()
            if error == EINTR { continue }
            if error == EAGAIN || error == EWOULDBLOCK { return nil }
            throw .system(SystemCallError(call: "rdma_get_cm_event", errno: error))
        }
        guard let event = raw else { return nil }
        let copy = CMEvent(event.pointee)
        rdma_ack_cm_event(event)
        return copy
    }

    /// Waits for the next event until `deadline` (nil: forever). Returns nil on timeout.
    func waitForEvent(until deadline: ContinuousClock.Instant?) throws(TransportError) -> CMEvent? {
        while true {
            if let event = try nextEvent() { return event }
            let timeout = PollTimeout.milliseconds(until: deadline)
            if timeout == 0 { return nil }
            var descriptor = pollfd(fd: fileDescriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, timeout)
            if ready < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                throw .system(SystemCallError(call: "poll", errno: error, context: "rdma_cm event channel"))
            }
        }
    }
}
