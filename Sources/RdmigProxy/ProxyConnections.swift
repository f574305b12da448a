#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import Synchronization

/// The connections one proxy side is relaying: their count, the relays a stop must abort,
/// and the totals of those that ended. Each connection runs on a thread of its own.
final class ProxyConnections: Sendable {
    private struct State {
        var nextID = 1
        var active: [Int: ProxyConnectionRelay] = [:]
        var running = 0
        var report: ProxyReport
    }

    private let state: Mutex<State>
    private let onReport: @Sendable (ProxyConnectionReport) -> Void

    init(role: String, onReport: @escaping @Sendable (ProxyConnectionReport) -> Void) {
        state = Mutex(State(report: ProxyReport(role: role)))
        self.onReport = onReport
    }

    /// Runs `body` for a new connection on its own thread; `body` gets the connection's number.
    func start(_ name: String, _ body: @escaping @Sendable (Int) -> ProxyConnectionReport) throws(SystemCallError) {
        let id = state.withLock { state -> Int in
            state.running += 1
            defer { state.nextID += 1 }
            return state.nextID
        }
        do {
            // Detached when the handle goes (SystemThread's deinit): nothing joins it.
            _ = try SystemThread(name: name) { [self] in
                let report = body(id)
                // One report at a time, so printed reports never interleave.
                state.withLock { state in
                    state.active[id] = nil
                    state.report.add(report)
                    onReport(report)
                    state.running -= 1
                }
            }
        } catch {
            state.withLock { $0.running -= 1 }
            throw error
        }
    }

    /// Makes `relay` reachable by `abortAll` until its connection ends.
    func relaying(_ id: Int, _ relay: ProxyConnectionRelay) {
        state.withLock { $0.active[id] = relay }
    }

    var running: Int { state.withLock { $0.running } }
    var served: Int { state.withLock { $0.report.connections } }

    func abortAll(_ reason: String) {
        let relays = state.withLock { Array($0.active.values) }
        for relay in relays { relay.abort(reason) }
    }

    /// Waits until no connection runs, at most `timeout`.
    func waitIdle(timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        while running > 0 && ContinuousClock.now < deadline { usleep(10_000) }
    }

    var report: ProxyReport { state.withLock { $0.report } }
}
