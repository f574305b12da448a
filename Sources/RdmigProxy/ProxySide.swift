#if canImport(Glibc)
import Glibc
#endif
import Logging
import RdmigChannels
import RdmigMigration
import RdmigSystem
import RdmigTransport

/// What both `rdmig proxy` sides are given.
public struct ProxyOptions: Sendable {
    public var key: PreSharedKey
    public var transportOptions: TransportOptions
    public var encryption: EncryptionPolicy = .auto
    /// Longest wait for the peer's answer while a connection is being set up.
    public var peerTimeout: Duration = .seconds(60)
    /// Serve connections until stopped; otherwise stop once at least one was relayed and
    /// none is running (one migration, however many sockets it opens at once).
    public var keepServing = false
    /// CPUs for the relay threads; empty: anywhere.
    public var relayCPUs: [Int32] = []
    /// Why to stop (a signal's name), asked between connections.
    public var stopRequested: @Sendable () -> String? = { nil }
    /// Each connection's report as it ends.
    public var onConnection: @Sendable (ProxyConnectionReport) -> Void = { _ in }
    public var logger = Logger(label: "rdmig.proxy")

    public init(key: PreSharedKey, transportOptions: TransportOptions) {
        self.key = key
        self.transportOptions = transportOptions
    }

    /// Each direction's ring: 8 slots of 256 KiB, so a stalled reader holds back at most 2 MiB
    /// per direction and connection besides the socket buffers.
    static let ring = ByteStreamReceiver.Configuration(slotCount: 8, slotSize: 256 * 1024)
    static let pollInterval: Duration = .milliseconds(250)
    /// How long a stop waits for the aborted connections' threads.
    static let stopGrace: Duration = .seconds(5)

    /// The serving loop both sides share: `next` accepts one connection (nil: none yet) and
    /// starts it on `connections`. Returns the totals once stopped.
    func serve(connections: ProxyConnections, started: ContinuousClock.Instant, next: () throws -> Bool) throws -> ProxyReport {
        let cpuStarted = ProcessCPUTime.now()
        while true {
            if let reason = stopRequested() {
                logger.notice("\(reason): no longer accepting connections; aborting \(connections.running) running")
                connections.abortAll("the proxy was stopped (\(reason))")
                break
            }
            if !keepServing, connections.served > 0, connections.running == 0 { break }
            _ = try next()
        }
        connections.waitIdle(timeout: Self.stopGrace)
        var report = connections.report
        report.durationMilliseconds = (ContinuousClock.now - started).milliseconds
        report.cpuMilliseconds = (ProcessCPUTime.now() - cpuStarted).milliseconds
        return report
    }

    func relay(_ session: MigrationSession, socket: Int32, sender: ByteStreamSender, receiver: ByteStreamReceiver,
               id: Int, connections: ProxyConnections) -> ProxyConnectionRelay.Outcome {
        let relay = ProxyConnectionRelay(session: session, socket: socket, sender: sender, receiver: receiver, cpus: relayCPUs)
        connections.relaying(id, relay)
        return relay.run()
    }
}

/// `rdmig proxy source`: every connection accepted on a unix socket becomes its own
/// authenticated transport connection to `rdmig proxy dest`, which connects it to its unix
/// socket. The connection is relayed only once the destination's socket accepted it: when it
/// cannot, the destination aborts the session and the accepted connection is closed at once.
public final class ProxySource: Sendable {
    public let listenPath: String
    public let endpoint: TransportEndpoint
    public let backend: any TransportBackend
    public let options: ProxyOptions

    public init(listenPath: String, endpoint: TransportEndpoint, backend: any TransportBackend, options: ProxyOptions) {
        self.listenPath = listenPath
        self.endpoint = endpoint
        self.backend = backend
        self.options = options
    }

    /// Listens on the unix socket (removed again at the end) and serves until stopped.
    /// `listening` is called once the socket accepts connections.
    public func run(listening: () -> Void = {}) throws -> ProxyReport {
        let started = ContinuousClock.now
        let listener = try UnixStreamSocket.listen(at: listenPath)
        defer {
            close(listener)
            unlink(listenPath)
        }
        listening()
        let connections = ProxyConnections(role: "source", onReport: options.onConnection)
        return try options.serve(connections: connections, started: started) {
            guard let socket = try UnixStreamSocket.accept(listener, timeout: ProxyOptions.pollInterval) else { return false }
            do {
                try connections.start("rdmig-proxy-conn") { id in self.serve(socket, id: id, connections: connections) }
            } catch {
                options.logger.error("cannot relay a connection on \(listenPath): \(error)")
                close(socket)
            }
            return true
        }
    }

    private func serve(_ socket: Int32, id: Int, connections: ProxyConnections) -> ProxyConnectionReport {
        let started = ContinuousClock.now
        defer { close(socket) }
        var report = ProxyConnectionReport(role: "source", connection: id, peer: endpoint.description, status: .refused,
                                           bytesToDestination: 0, bytesToSource: 0, durationMilliseconds: 0)
        var session: MigrationSession?
        do {
            let connection = try connectRetryingRefusal(backend, to: endpoint, options: options.transportOptions)
            let opened = try MigrationSession(connection: connection, role: .source, key: options.key,
                                              handshakeTimeout: options.transportOptions.handshakeTimeout,
                                              routerConfiguration: CompletionRouter.Configuration(),
                                              features: MigrationSession.proxyModeFeatures, encryption: options.encryption)
            session = opened
            // A signal interrupts the wait for the destination's answer, too.
            opened.stopReason = options.stopRequested
            let receiver: ByteStreamReceiver
            do {
                receiver = try ByteStreamReceiver(router: opened.router, channel: .proxyToSource, configuration: ProxyOptions.ring)
            } catch {
                throw MigrationError.channel(error, .layout, during: "opening the stream to the source")
            }
            try opened.send(.streamRing(receiver.ring), .layout)
            // The destination answers once its unix socket accepted the connection, or aborts.
            guard case .streamRing(let ring) = try opened.receive(.layout, during: "waiting for the destination to connect its unix socket",
                                                                  timeout: options.peerTimeout),
                  ring.channel == .proxyToDestination else {
                throw MigrationError(.layout, "the destination answered with something other than its stream ring")
            }
            let sender: ByteStreamSender
            do {
                sender = try ByteStreamSender(router: opened.router, ring: ring)
            } catch {
                throw MigrationError.channel(error, .layout, during: "opening the stream to the destination")
            }
            options.logger.info("connection \(id): relaying to \(endpoint) over \(connection.backend)")
            let outcome = options.relay(opened, socket: socket, sender: sender, receiver: receiver, id: id, connections: connections)
            report.record(outcome, onSourceSide: true)
        } catch {
            report.error = "\(error)"
            options.logger.error("connection \(id) refused: \(error)")
            session?.abort("\(error)")
        }
        session?.close()
        report.durationMilliseconds = (ContinuousClock.now - started).milliseconds
        return report
    }
}

/// `rdmig proxy dest`: authenticates each source session on the listener (before anything is
/// exported to it) and connects it to the unix socket at `connectPath`.
public final class ProxyDestination: Sendable {
    public let connectPath: String
    public let options: ProxyOptions

    public init(connectPath: String, options: ProxyOptions) {
        self.connectPath = connectPath
        self.options = options
    }

    public func run(listener: any TransportListener) throws -> ProxyReport {
        let started = ContinuousClock.now
        var acceptorOptions = AuthenticatingListener.Options(key: options.key)
        acceptorOptions.features = MigrationSession.proxyModeFeatures
        acceptorOptions.handshakeTimeout = options.transportOptions.handshakeTimeout
        acceptorOptions.maximumPending = options.transportOptions.maximumPendingHandshakes
        acceptorOptions.encryption = options.encryption
        let logger = options.logger
        acceptorOptions.log = { logger.notice("\($0)") }
        let acceptor = try AuthenticatingListener(listener: listener, options: acceptorOptions)
        defer { acceptor.stop() }
        let connections = ProxyConnections(role: "destination", onReport: options.onConnection)
        return try options.serve(connections: connections, started: started) {
            guard let session = acceptor.nextSession(timeout: ProxyOptions.pollInterval) else {
                if acceptor.isStopped { throw ProxyError("the listener on \(listener.localEndpoint) stopped accepting connections") }
                return false
            }
            do {
                try connections.start("rdmig-proxy-conn") { id in self.serve(session, id: id, connections: connections) }
            } catch {
                session.abort("the destination cannot start a relay: \(error)")
                session.close()
            }
            return true
        }
    }

    private func serve(_ session: MigrationSession, id: Int, connections: ProxyConnections) -> ProxyConnectionReport {
        let started = ContinuousClock.now
        var report = ProxyConnectionReport(role: "destination", connection: id, peer: session.connection.peerEndpoint.description,
                                           status: .refused, bytesToDestination: 0, bytesToSource: 0, durationMilliseconds: 0)
        var socket: Int32 = -1
        session.stopReason = options.stopRequested
        do {
            guard case .streamRing(let ring) = try session.receive(.layout, during: "waiting for the source's stream ring", timeout: options.peerTimeout),
                  ring.channel == .proxyToSource else {
                throw MigrationError(.layout, "the source sent something other than its stream ring")
            }
            do {
                socket = try UnixStreamSocket.connect(to: connectPath)
            } catch {
                throw ProxyError("the destination cannot connect to its unix socket: \(error)")
            }
            let sender: ByteStreamSender
            let receiver: ByteStreamReceiver
            do {
                sender = try ByteStreamSender(router: session.router, ring: ring)
                receiver = try ByteStreamReceiver(router: session.router, channel: .proxyToDestination, configuration: ProxyOptions.ring)
            } catch {
                throw MigrationError.channel(error, .layout, during: "opening the streams")
            }
            try session.send(.streamRing(receiver.ring), .layout)
            options.logger.info("connection \(id) from \(report.peer): relaying to \(connectPath)")
            let outcome = options.relay(session, socket: socket, sender: sender, receiver: receiver, id: id, connections: connections)
            report.record(outcome, onSourceSide: false)
        } catch {
            report.error = "\(error)"
            options.logger.error("connection \(id) from \(report.peer) refused: \(error)")
            session.abort("\(error)")
        }
        session.close()
        if socket >= 0 { close(socket) }
        report.durationMilliseconds = (ContinuousClock.now - started).milliseconds
        return report
    }
}

public struct ProxyError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
