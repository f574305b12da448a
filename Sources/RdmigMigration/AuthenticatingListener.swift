import Foundation
import RdmigChannels
import RdmigSystem
import RdmigTransport
import Synchronization

/// The destination's front door: accepts every connection on its listener and runs each one's
/// handshake on a thread of its own, bounded by the handshake timeout, so that a silent peer,
/// a port scan or junk never holds up a legitimate source, and no accept-time error of one
/// peer ends the service. Only authenticated sessions come out of `nextSession`.
///
/// At most `maximumPending` connections are in their handshake at once (more are closed at
/// once); at most `readyLimit` authenticated sessions wait for the service (more are told the
/// destination is busy). Failures are logged once per peer host, then at most once a minute
/// with a count, so a flood cannot flood the log.
package final class AuthenticatingListener: @unchecked Sendable {
    package struct Options: Sendable {
        package var key: PreSharedKey
        package var features: MigrationMessage.Features = MigrationSession.nativeFeatures
        package var handshakeTimeout: Duration = .seconds(5)
        package var maximumPending = 16
        package var readyLimit = 4
        package var routerConfiguration = CompletionRouter.Configuration()
        package var encryption: EncryptionPolicy = .auto
        package var log: @Sendable (String) -> Void = { _ in }

        package init(key: PreSharedKey) {
            self.key = key
        }
    }

    private struct State {
        var pending = 0
        var ready: [MigrationSession] = []
        var stopped = false
        var failures: [String: (logged: ContinuousClock.Instant, suppressed: Int)] = [:]
    }

    /// What the accept thread and the handshake threads share with the owner (they may
    /// outlive a `stop` by up to one handshake timeout).
    private final class Shared: Sendable {
        let listener: any TransportListener
        let options: Options
        let state = Mutex(State())
        let readyBell: Doorbell

        init(listener: any TransportListener, options: Options) throws(SystemCallError) {
            self.listener = listener
            self.options = options
            readyBell = try Doorbell()
        }
    }

    private let shared: Shared
    private var readyBell: Doorbell { shared.readyBell }
    private var acceptThread: SystemThread?

    static let pollInterval: Duration = .milliseconds(200)
    static let failureLogInterval: Duration = .seconds(60)

    package init(listener: any TransportListener, options: Options) throws(SystemCallError) {
        let shared = try Shared(listener: listener, options: options)
        self.shared = shared
        acceptThread = try SystemThread(name: "rdmig-accept") { Self.acceptLoop(shared) }
    }

    deinit {
        stop()
    }

    /// The next authenticated session, waiting up to `timeout` (nil: until `stop`); nil when
    /// stopped or timed out.
    package func nextSession(timeout: Duration? = nil) -> MigrationSession? {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            let (session, stopped) = shared.state.withLock { state -> (MigrationSession?, Bool) in
                (state.ready.isEmpty ? nil : state.ready.removeFirst(), state.stopped)
            }
            if let session { return session }
            if stopped { return nil }
            var milliseconds: Int32 = 500
            if let deadline {
                let left = deadline - ContinuousClock.now
                if left <= .zero { return nil }
                milliseconds = Int32(max(1, min(500, left.milliseconds.rounded(.up))))
            }
            readyBell.sleep(timeoutMilliseconds: milliseconds) {
                shared.state.withLock { !$0.ready.isEmpty || $0.stopped }
            }
        }
    }

    /// The listener was closed or `stop` was called: no session will come any more.
    package var isStopped: Bool { shared.state.withLock { $0.stopped } }

    /// Stops accepting: the accept thread ends, handshakes still running end in a closed
    /// connection, and sessions nobody took are aborted.
    package func stop() {
        let unclaimed = shared.state.withLock { state -> [MigrationSession] in
            state.stopped = true
            defer { state.ready = [] }
            return state.ready
        }
        readyBell.forceRing()
        acceptThread?.join()
        acceptThread = nil
        for session in unclaimed {
            session.abort("the destination stopped accepting migrations")
            session.close()
        }
    }

    private static func acceptLoop(_ shared: Shared) {
        let listener = shared.listener, readyBell = shared.readyBell, options = shared.options
        while !shared.state.withLock({ $0.stopped }) {
            let connection: any TransportConnection
            do {
                connection = try listener.accept(timeout: pollInterval)
            } catch {
                switch error {
                case .timedOut: continue
                case .connectionClosed:
                    // The listener was closed: nothing more will come.
                    shared.state.withLock { $0.stopped = true }
                    readyBell.forceRing()
                    return
                case .system:
                    // Out of descriptors or memory: let it pass rather than spin.
                    noteFailure(host: "this host", "accepting a connection: \(error)", shared)
                    usleep(50_000)
                default:
                    noteFailure(host: host(of: error), "\(error)", shared)
                }
                continue
            }
            let peer = connection.peerEndpoint
            let admitted = shared.state.withLock { state -> Bool in
                guard !state.stopped, state.pending < options.maximumPending else { return false }
                state.pending += 1
                return true
            }
            guard admitted else {
                connection.close()
                noteFailure(host: peer.host, "closed the connection from \(peer) at once: \(options.maximumPending) connections are already "
                    + "in their handshake ([auth] max-unauthenticated)", shared)
                continue
            }
            Thread.detachNewThread {
                authenticate(connection, shared)
            }
        }
    }

    private static func authenticate(_ connection: any TransportConnection, _ shared: Shared) {
        let readyBell = shared.readyBell, options = shared.options
        let peer = connection.peerEndpoint
        let session: MigrationSession
        do {
            session = try MigrationSession(connection: connection, role: .destination, key: options.key,
                                           handshakeTimeout: options.handshakeTimeout,
                                           routerConfiguration: options.routerConfiguration, features: options.features,
                                           encryption: options.encryption)
        } catch {
            shared.state.withLock { $0.pending -= 1 }
            noteFailure(host: peer.host, "refused \(peer): \(error.description)", shared)
            return
        }
        let verdict = shared.state.withLock { state -> String? in
            state.pending -= 1
            if state.stopped { return "the destination stopped accepting migrations" }
            guard state.ready.count < options.readyLimit else {
                return "the destination is busy: \(options.readyLimit) authenticated migrations already wait for it"
            }
            state.ready.append(session)
            return nil
        }
        if let verdict {
            options.log("turned away the authenticated source \(peer): \(verdict)")
            session.abort(verdict)
            session.close()
            return
        }
        readyBell.forceRing()
    }

    /// Logs a refused peer: the first failure of a kind from a host at once, later ones at most
    /// once per `failureLogInterval`, with how many were not logged in between.
    private static func noteFailure(host: String, _ text: String, _ shared: Shared) {
        let options = shared.options
        let now = ContinuousClock.now
        // One entry per host and kind of failure (the text without its numbers: ports,
        // counts), so a scan does not hide a wrong key from the same host.
        let key = host + " " + String(text.filter { !$0.isNumber }.prefix(120))
        let line: String? = shared.state.withLock { state in
            if state.failures.count > 4096 { state.failures = [:] }
            guard let entry = state.failures[key] else {
                state.failures[key] = (now, 0)
                return text
            }
            guard now - entry.logged >= failureLogInterval else {
                state.failures[key] = (entry.logged, entry.suppressed + 1)
                return nil
            }
            state.failures[key] = (now, 0)
            return entry.suppressed == 0 ? text : "\(text) (and \(entry.suppressed) more failures from \(host) not logged since)"
        }
        if let line { options.log(line) }
    }

    private static func host(of error: TransportError) -> String {
        switch error {
        case .peerRefused(let endpoint, _), .rejectedByPeer(let endpoint, _), .peerDisconnected(let endpoint, _), .unreachable(let endpoint, _),
             .connectionRefused(let endpoint):
            return endpoint.host
        default:
            return "unknown peer"
        }
    }
}
