import Synchronization

/// A result that arrives once, from another thread, for one waiting task: a command's reply
/// (resolved by the reader thread), an event a waiter wants, QEMU's greeting. Whoever resolves
/// first wins (the reply, the timeout or the cancellation); later resolutions are ignored, so
/// a late reply after a timeout is simply dropped.
final class OneShotResult<Value: Sendable>: Sendable {
    private struct State {
        var resolved = false
        var early: Result<Value, QMPError>?
        var continuation: CheckedContinuation<Result<Value, QMPError>, Never>?
    }

    private let state = Mutex(State())

    /// Returns false when a result was already there.
    @discardableResult
    func resolve(_ result: Result<Value, QMPError>) -> Bool {
        let continuation: CheckedContinuation<Result<Value, QMPError>, Never>?? = state.withLock { state in
            guard !state.resolved else { return .none }
            state.resolved = true
            if let continuation = state.continuation {
                state.continuation = nil
                return .some(continuation)
            }
            state.early = result
            return .some(nil)
        }
        guard let continuation else { return false }
        continuation?.resume(returning: result)
        return true
    }

    /// Waits for the result, at most `timeout`; the task's cancellation ends the wait with
    /// `cancelError`, unless that is nil.
    func wait(timeout: Duration, timeoutError: QMPError, cancelError: QMPError?) async -> Result<Value, QMPError> {
        let timer = Task { [self] in
            do { try await Task.sleep(for: timeout) } catch { return }
            resolve(.failure(timeoutError))
        }
        defer { timer.cancel() }
        guard let cancelError else { return await result() }
        return await withTaskCancellationHandler {
            await result()
        } onCancel: {
            resolve(.failure(cancelError))
        }
    }

    private func result() async -> Result<Value, QMPError> {
        await withCheckedContinuation { continuation in
            let early: Result<Value, QMPError>? = state.withLock { state in
                if let early = state.early { return early }
                state.continuation = continuation
                return nil
            }
            if let early { continuation.resume(returning: early) }
        }
    }
}
