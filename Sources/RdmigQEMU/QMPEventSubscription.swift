import Synchronization

/// The events a QMP connection received since this subscription was made, in arrival order,
/// kept until someone takes them. Make the subscription before the command that causes the
/// events (e.g. before `migrate`): nothing that arrives after `subscribe()` is lost, however
/// late the wait starts. One waiter at a time.
public final class QMPEventSubscription: Sendable {
    /// Keeps the newest `limit` events; an hour-long migration's MIGRATION_PASS events must
    /// not grow memory without bound when nobody reads them.
    public let limit: Int
    let path: String

    private struct Waiter {
        let filter: @Sendable (QMPEvent) -> Bool
        let slot: OneShotResult<QMPEvent>
    }

    private struct State {
        var buffer: [QMPEvent] = []
        var waiter: Waiter?
        var ended: QMPError?
        var dropped = 0
    }

    private let state = Mutex(State())
    private let onRelease: (@Sendable () -> Void)?

    init(path: String, limit: Int = 4096, onRelease: (@Sendable () -> Void)?) {
        self.path = path
        self.limit = limit
        self.onRelease = onRelease
    }

    deinit { onRelease?() }

    /// Takes the first buffered or arriving event named `name` (any name when nil) for which
    /// `predicate` holds; events passed over stay buffered for later waits. `predicate` runs
    /// under the subscription's lock: keep it a plain test of the event.
    public func next(
        named name: String? = nil, where predicate: (@Sendable (QMPEvent) -> Bool)? = nil, timeout: Duration
    ) async throws(QMPError) -> QMPEvent {
        let filter: @Sendable (QMPEvent) -> Bool = { event in
            (name == nil || event.name == name) && (predicate?(event) ?? true)
        }
        let slot = OneShotResult<QMPEvent>()
        let immediate: Result<QMPEvent, QMPError>? = state.withLock { state in
            if let index = state.buffer.firstIndex(where: filter) { return .success(state.buffer.remove(at: index)) }
            if let ended = state.ended { return .failure(ended) }
            if state.waiter != nil {
                return .failure(.misuse("two tasks wait on one QMPEventSubscription of \(path); subscribe once per waiter"))
            }
            state.waiter = Waiter(filter: filter, slot: slot)
            return nil
        }
        if let immediate { return try immediate.get() }
        let what = "waiting for event \(name ?? "(any)")"
        let result = await slot.wait(timeout: timeout,
                                     timeoutError: .timedOut(path: path, operation: what, after: timeout),
                                     cancelError: .cancelled(operation: "\(what) on \(path)"))
        state.withLock { state in
            if state.waiter?.slot === slot { state.waiter = nil }
        }
        return try result.get()
    }

    /// Takes every buffered event.
    public func drain() -> [QMPEvent] {
        state.withLock { state in
            defer { state.buffer.removeAll() }
            return state.buffer
        }
    }

    /// Events discarded because more than `limit` were waiting to be read.
    public var droppedCount: Int { state.withLock { $0.dropped } }

    func deliver(_ event: QMPEvent) {
        state.withLock { state in
            if let waiter = state.waiter, waiter.filter(event) {
                state.waiter = nil
                // A waiter that just timed out leaves the event to the buffer.
                if waiter.slot.resolve(.success(event)) { return }
            }
            state.buffer.append(event)
            if state.buffer.count > limit {
                state.buffer.removeFirst(state.buffer.count - limit)
                state.dropped += 1
            }
        }
    }

    /// The connection ended: buffered events can still be taken, then waits fail with `error`.
    func end(_ error: QMPError) {
        state.withLock { state in
            guard state.ended == nil else { return }
            state.ended = error
            if let waiter = state.waiter {
                state.waiter = nil
                waiter.slot.resolve(.failure(error))
            }
        }
    }
}
