import Synchronization

/// Everything a migration driver waits for, in one queue: QMP events, the relay's end, the
/// QMP connection's end, the deadline and the driver task's cancellation. A driver is a loop
/// over `next()`, so a relay that dies while QEMU is quiet is noticed at once, not at QEMU's
/// next event.
///
/// Not an AsyncStream: cancelling the task that iterates one ends the stream for good, and a
/// cancelled driver still has to wait for QEMU's answer to migrate_cancel. Here cancellation
/// is one more input (`.cancelled`, delivered once), and waiting goes on afterwards.
final class MigrationRunInbox: Sendable {
    enum Input: Sendable {
        case event(QMPEvent)
        case relayEnded(Result<QEMURelayStatistics, any Error>)
        case connectionEnded
        case deadline
        case cancelled
    }

    /// The queue proper, shared with the tasks that feed it (they must not keep the inbox alive).
    private final class Queue: Sendable {
        struct State {
            var items: [Input] = []
            var waiter: CheckedContinuation<Input, Never>?
            var cancellationPosted = false
            var deadlineGeneration = 0
        }

        let state = Mutex(State())

        func post(_ input: Input) {
            let waiter: CheckedContinuation<Input, Never>? = state.withLock { state in
                if let waiter = state.waiter {
                    state.waiter = nil
                    return waiter
                }
                state.items.append(input)
                return nil
            }
            waiter?.resume(returning: input)
        }
    }

    private let queue = Queue()
    private let pump: Task<Void, Never>
    private let timer = Mutex<Task<Void, Never>?>(nil)

    /// `events` must come from `QMPClient.events()` made before the command that starts the
    /// migration, so no event is missed.
    init(events: AsyncStream<QMPEvent>) {
        let queue = queue
        pump = Task {
            for await event in events { queue.post(.event(event)) }
            if !Task.isCancelled { queue.post(.connectionEnded) }
        }
    }

    deinit {
        pump.cancel()
        timer.withLock { $0?.cancel() }
    }

    /// Runs the relay in its own task (not a child: cancelling the driver does not cancel it;
    /// the driver's abort path does, after shutting the fd). Its end arrives as `.relayEnded`.
    func startRelay(_ body: @escaping @Sendable () async throws -> QEMURelayStatistics) -> Task<Void, Never> {
        let queue = queue
        return Task {
            do {
                queue.post(.relayEnded(.success(try await body())))
            } catch {
                queue.post(.relayEnded(.failure(error)))
            }
        }
    }

    /// Replaces the deadline: `.deadline` arrives `after` from now (once); an earlier
    /// deadline's input that is already queued is dropped.
    func setDeadline(after duration: Duration) {
        let generation = queue.state.withLock { state in
            state.deadlineGeneration += 1
            state.items.removeAll { if case .deadline = $0 { return true } else { return false } }
            return state.deadlineGeneration
        }
        let queue = queue
        let task = Task {
            do { try await Task.sleep(for: duration) } catch { return }
            if queue.state.withLock({ $0.deadlineGeneration }) == generation { queue.post(.deadline) }
        }
        timer.withLock {
            $0?.cancel()
            $0 = task
        }
    }

    /// The next input; one waiter at a time (the driver).
    func next() async -> Input {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready: Input? = queue.state.withLock { state in
                    if !state.items.isEmpty { return state.items.removeFirst() }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let first = queue.state.withLock { state in
                defer { state.cancellationPosted = true }
                return !state.cancellationPosted
            }
            if first { queue.post(.cancelled) }
        }
    }
}
