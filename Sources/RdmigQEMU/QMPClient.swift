import Logging

/// A QMP client (QEMU Machine Protocol, docs/interop/qmp-spec.rst): JSON over a unix socket,
/// capabilities negotiated on connect, commands answered in order with typed replies or a
/// `QMPError.commandFailed` carrying QEMU's error class and description, asynchronous events
/// with QEMU's timestamps, and `getfd` with the descriptor passed as SCM_RIGHTS.
///
/// Commands may be issued from several tasks at once; replies are matched by id. Events go to
/// every subscription (`subscribe()`, `events()`) and to the client's own buffer, which
/// `waitForEvent` consumes (it holds every event since the connection was made).
public final class QMPClient: Sendable {
    public let greeting: QMPGreeting
    /// How long a command waits for its reply unless the call says otherwise.
    public let commandTimeout: Duration
    let connection: QMPConnection
    private let ownEvents: QMPEventSubscription

    public var path: String { connection.path }
    /// The QEMU version from the greeting (`query-version` says the same).
    public var version: QEMUVersion { greeting.version }

    private init(connection: QMPConnection, greeting: QMPGreeting, commandTimeout: Duration) {
        self.connection = connection
        self.greeting = greeting
        self.commandTimeout = commandTimeout
        ownEvents = connection.permanentSubscription(limit: 4096)
    }

    deinit { connection.end(.closed(path: connection.path)) }

    /// Connects to QEMU's QMP socket at `path`, reads the greeting and leaves capabilities
    /// negotiation mode. A socket held by another client gives `.busy` after `greetingTimeout`
    /// (QEMU keeps further clients in its backlog, silent, until the first one leaves).
    public static func connect(
        to path: String, greetingTimeout: Duration = .seconds(5), commandTimeout: Duration = .seconds(60),
        logger: Logger? = nil
    ) async throws(QMPError) -> QMPClient {
        let socket = try QMPSocket.connect(to: path)
        let connection = try QMPConnection(socket: socket)
        let greeting = await connection.greeting.wait(
            timeout: greetingTimeout, timeoutError: .busy(path: path, waited: greetingTimeout),
            cancelError: .cancelled(operation: "connecting to QMP socket \(path)"))
        let client: QMPClient
        switch greeting {
        case .success(let greeting):
            client = QMPClient(connection: connection, greeting: greeting, commandTimeout: commandTimeout)
        case .failure(let error):
            connection.end(error)
            throw error
        }
        _ = try await client.execute("qmp_capabilities")
        logger?.debug("QMP connected", metadata: ["socket": "\(path)", "qemu": "\(client.version)"])
        return client
    }

    /// Closes the connection: outstanding commands and waits fail with `.closed`.
    public func close() {
        connection.end(.closed(path: path))
    }

    /// Why the connection ended (QEMU exited, `close()`...), nil while it is open.
    public var endReason: QMPError? { connection.endReason }

    // MARK: - Commands

    /// Set (with `$ignoresCancellation.withValue(true)`) around clean-up that must reach QEMU
    /// even when the task was cancelled: migrate_cancel and cont after an abandoned migration.
    /// Commands then wait for their reply or their timeout, whatever the task's state.
    @TaskLocal public static var ignoresCancellation = false

    /// Runs `command` and returns QEMU's `return` value. With `fd`, the descriptor is passed
    /// with the command as SCM_RIGHTS (for `getfd`); QEMU gets its own copy, the caller keeps
    /// and closes `fd`. A timed-out or cancelled command still runs in QEMU; its reply is dropped.
    @discardableResult
    public func execute(
        _ command: String, arguments: QMPValue? = nil, passing fd: Int32? = nil, timeout: Duration? = nil
    ) async throws(QMPError) -> QMPValue {
        let (id, slot) = try connection.send(command, arguments: arguments, passing: fd)
        let wait = timeout ?? commandTimeout
        let result = await slot.wait(
            timeout: wait, timeoutError: .timedOut(path: path, operation: command, after: wait),
            cancelError: QMPClient.ignoresCancellation
                ? nil : .cancelled(operation: "waiting for the reply to \(command) on \(path)"))
        if case .failure = result { connection.forget(id) }
        return try result.get()
    }

    /// Runs `command` and decodes its `return` value as `Reply`.
    public func execute<Reply: Decodable>(
        _ command: String, arguments: QMPValue? = nil, passing fd: Int32? = nil, timeout: Duration? = nil,
        as type: Reply.Type
    ) async throws(QMPError) -> Reply {
        let value = try await execute(command, arguments: arguments, passing: fd, timeout: timeout)
        do {
            return try value.decode(as: Reply.self)
        } catch {
            throw .unexpectedReply(command: command, detail: "\(error) in \(value.jsonString.prefix(300))")
        }
    }

    // MARK: - Events

    /// A new subscription: every event from now on, buffered until taken.
    public func subscribe(limit: Int = 4096) -> QMPEventSubscription {
        connection.subscribe(limit: limit)
    }

    /// Every event from now on, until the connection ends (then the stream finishes).
    public func events() -> AsyncStream<QMPEvent> {
        connection.eventStream()
    }

    /// Takes the first event named `name` matching `predicate` from the client's own buffer
    /// (all events since connecting, each taken once), waiting up to `timeout` for it.
    public func waitForEvent(
        named name: String? = nil, where predicate: (@Sendable (QMPEvent) -> Bool)? = nil, timeout: Duration
    ) async throws(QMPError) -> QMPEvent {
        try await ownEvents.next(named: name, where: predicate, timeout: timeout)
    }

    /// Takes every event in the client's own buffer.
    public func takeEvents() -> [QMPEvent] {
        ownEvents.drain()
    }
}
