/// Everything a migration driver waits for, in one queue: QMP events, the relay's end, the
/// QMP connection's end and the deadline. A driver is a loop over `next()`, so a relay that
/// dies while QEMU is quiet is noticed at once, not at QEMU's next event.
final class MigrationRunInbox {
    enum Input: Sendable {
        case event(QMPEvent)
        case relayEnded(Result<QEMURelayStatistics, any Error>)
        case connectionEnded
        case deadline
    }

    private let continuation: AsyncStream<Input>.Continuation
    private var iterator: AsyncStream<Input>.Iterator
    private let pump: Task<Void, Never>
    private var timer: Task<Void, Never>?

    /// `events` must come from `QMPClient.events()` made before the command that starts the
    /// migration, so no event is missed.
    init(events: AsyncStream<QMPEvent>) {
        let (stream, continuation) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .unbounded)
        self.continuation = continuation
        iterator = stream.makeAsyncIterator()
        pump = Task {
            for await event in events { continuation.yield(.event(event)) }
            if !Task.isCancelled { continuation.yield(.connectionEnded) }
        }
    }

    deinit {
        pump.cancel()
        timer?.cancel()
        continuation.finish()
    }

    /// Runs the relay in its own task; its end arrives as `.relayEnded`. The returned task
    /// can be cancelled to ask the relay to stop.
    func startRelay(_ body: @escaping @Sendable () async throws -> QEMURelayStatistics) -> Task<Void, Never> {
        let continuation = continuation
        return Task {
            do {
                continuation.yield(.relayEnded(.success(try await body())))
            } catch {
                continuation.yield(.relayEnded(.failure(error)))
            }
        }
    }

    /// Replaces the deadline: `.deadline` arrives `after` from now (once).
    func setDeadline(after duration: Duration) {
        timer?.cancel()
        let continuation = continuation
        timer = Task {
            do { try await Task.sleep(for: duration) } catch { return }
            continuation.yield(.deadline)
        }
    }

    func next() async -> Input {
        // The stream only finishes in deinit, so nil cannot be seen here; .deadline keeps a
        // caller that somehow sees it from spinning.
        await iterator.next(isolation: nil) ?? .deadline
    }
}
