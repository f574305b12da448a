#if canImport(Glibc)
import Glibc
#endif
import CRdmigShims
import RdmigSystem
import Synchronization

/// Established connections waiting for `accept`, filled by the listener's event thread.
///
/// Waiters sleep in poll(2) on a non-blocking eventfd and re-check the queue after every
/// wake-up (drain, then look), so a wake-up is never lost and several waiters never spin.
final class AcceptQueue: Sendable {
    private struct State {
        var ready: [VerbsConnection] = []
        var closed = false
        var failure: TransportError?
    }

    private let state = Mutex(State())
    private let eventDescriptor: Int32

    init() throws(TransportError) {
        let descriptor = eventfd(0, Int32(EFD_CLOEXEC | EFD_NONBLOCK))
        guard descriptor >= 0 else {
            throw .system(SystemCallError(call: "eventfd", errno: SystemCall.currentErrno(), context: "verbs accept queue"))
        }
        eventDescriptor = descriptor
    }

    deinit {
        Glibc.close(eventDescriptor)
    }

    private func ring() {
        var one: UInt64 = 1
        _ = write(eventDescriptor, &one, 8)
    }

    func push(_ connection: VerbsConnection) {
        let accepted = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.ready.append(connection)
            return true
        }
        if accepted { ring() } else { connection.close() }
    }

    /// The listener itself failed (device removed): accept reports it.
    func fail(_ error: TransportError) {
        state.withLock { if $0.failure == nil { $0.failure = error } }
        ring()
    }

    /// Stops accepting; waiters fail with `.connectionClosed`; queued connections are closed.
    func close() {
        let orphans = state.withLock { state -> [VerbsConnection] in
            state.closed = true
            defer { state.ready.removeAll() }
            return state.ready
        }
        for connection in orphans { connection.close() }
        ring()
    }

    func pop(timeout: Duration?, endpoint: TransportEndpoint) throws(TransportError) -> VerbsConnection {
        let deadline = PollTimeout.deadline(after: timeout)
        while true {
            var drained: UInt64 = 0
            _ = read(eventDescriptor, &drained, 8)
            let next: Result<VerbsConnection, TransportError>? = state.withLock { state in
                if !state.ready.isEmpty { return .success(state.ready.removeFirst()) }
                if state.closed { return .failure(.connectionClosed(detail: "the listener on \(endpoint) was closed")) }
                if let failure = state.failure { return .failure(failure) }
                return nil
            }
            if let next { return try next.get() }
            let milliseconds = PollTimeout.milliseconds(until: deadline)
            if milliseconds == 0 {
                throw .timedOut(operation: "accept on \(endpoint)", after: timeout ?? .zero)
            }
            var descriptor = pollfd(fd: eventDescriptor, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0, SystemCall.currentErrno() != EINTR {
                throw .system(SystemCallError(call: "poll", errno: SystemCall.currentErrno(), context: "accept on \(endpoint)"))
            }
        }
    }
}
