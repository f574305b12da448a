import Synchronization

/// Cancels a task that may not exist yet: a cancellation asked for before `attach` happens
/// at `attach`; one asked for after `finish` does nothing.
final class TaskCanceller: Sendable {
    private let state = Mutex<(cancel: (@Sendable () -> Void)?, requested: Bool, finished: Bool)>((nil, false, false))

    func attach(_ cancel: @escaping @Sendable () -> Void) {
        let requested = state.withLock { state in
            state.cancel = cancel
            return state.requested
        }
        if requested { cancel() }
    }

    /// True when this asked for the cancellation (the task had not finished).
    @discardableResult
    func cancel() -> Bool {
        let (cancel, finished) = state.withLock { state in
            if !state.finished { state.requested = true }
            return (state.cancel, state.finished)
        }
        if finished { return false }
        cancel?()
        return true
    }

    /// The task ended: later cancellations (a peer closing after the end) are not failures.
    func finish() {
        state.withLock { $0.finished = true }
    }
}
