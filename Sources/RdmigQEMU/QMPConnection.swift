import Foundation
import RdmigSystem
import Synchronization

/// The moving parts under `QMPClient`: the socket, a reader thread that takes every message
/// QEMU sends and hands it to whoever waits for it (a command's reply by its id, events to
/// every subscriber), and the bookkeeping of both.
///
/// One reader thread, not a task: it sleeps in read(2), which must never hold one of the
/// cooperative pool's threads (2 on these machines). It delivers in arrival order, so events
/// QEMU sent before a reply are in the subscribers' buffers when the command returns.
final class QMPConnection: Sendable {
    let socket: QMPSocket
    var path: String { socket.path }
    let greeting = OneShotResult<QMPGreeting>()

    private struct PendingCommand {
        let command: String
        let slot: OneShotResult<QMPValue>
    }

    private final class WeakSubscription: Sendable {
        weak let subscription: QMPEventSubscription?
        init(_ subscription: QMPEventSubscription) { self.subscription = subscription }
    }

    private enum Sink {
        case subscription(WeakSubscription)
        case stream(AsyncStream<QMPEvent>.Continuation)
    }

    private struct State {
        var nextID: Int64 = 1
        var pending: [Int64: PendingCommand] = [:]
        var sinks: [Int: Sink] = [:]
        var nextSink = 0
        var ended: QMPError?
        var greeted = false
    }

    private let state = Mutex(State())
    private let sendLock = Mutex(())

    init(socket: QMPSocket) throws(QMPError) {
        self.socket = socket
        do {
            _ = try SystemThread(name: "qmp-reader") { [self] in readLoop() }
        } catch {
            throw .system(error)
        }
    }

    // MARK: - Commands

    /// Registers a reply slot and sends the command; the reply (or the connection's end)
    /// resolves the slot. Registering first matters: the reply may arrive before send returns.
    func send(_ command: String, arguments: QMPValue?, passing fd: Int32?) throws(QMPError) -> (Int64, OneShotResult<QMPValue>) {
        let slot = OneShotResult<QMPValue>()
        let id: Int64 = try state.withLock { state throws(QMPError) in
            if let ended = state.ended { throw ended }
            let id = state.nextID
            state.nextID += 1
            state.pending[id] = PendingCommand(command: command, slot: slot)
            return id
        }
        var request: [String: QMPValue] = ["execute": .string(command), "id": .int(id)]
        if let arguments { request["arguments"] = arguments }
        var bytes = [UInt8](QMPValue.object(request).jsonData())
        bytes.append(UInt8(ascii: "\n"))
        do {
            try sendLock.withLock { _ throws(QMPError) in try socket.send(bytes, passing: fd) }
        } catch {
            forget(id)
            throw error
        }
        return (id, slot)
    }

    /// Drops a command nobody waits for any more (timed out, cancelled); its late reply is ignored.
    func forget(_ id: Int64) {
        _ = state.withLock { $0.pending.removeValue(forKey: id) }
    }

    // MARK: - Events

    func subscribe(limit: Int) -> QMPEventSubscription {
        let key = state.withLock { state in
            defer { state.nextSink += 1 }
            return state.nextSink
        }
        let subscription = QMPEventSubscription(path: path, limit: limit, onRelease: { [weak self] in
            _ = self?.state.withLock { $0.sinks.removeValue(forKey: key) }
        })
        let ended: QMPError? = state.withLock { state in
            if let ended = state.ended { return ended }
            state.sinks[key] = .subscription(WeakSubscription(subscription))
            return nil
        }
        if let ended { subscription.end(ended) }
        return subscription
    }

    /// A subscription without its own release: lives as long as the client that holds it.
    func permanentSubscription(limit: Int) -> QMPEventSubscription {
        let subscription = QMPEventSubscription(path: path, limit: limit, onRelease: nil)
        let ended: QMPError? = state.withLock { state in
            if let ended = state.ended { return ended }
            state.sinks[state.nextSink] = .subscription(WeakSubscription(subscription))
            state.nextSink += 1
            return nil
        }
        if let ended { subscription.end(ended) }
        return subscription
    }

    func eventStream() -> AsyncStream<QMPEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: QMPEvent.self, bufferingPolicy: .unbounded)
        let key: Int? = state.withLock { state in
            if state.ended != nil { return nil }
            let key = state.nextSink
            state.nextSink += 1
            state.sinks[key] = .stream(continuation)
            return key
        }
        guard let key else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.sinks.removeValue(forKey: key) }
        }
        return stream
    }

    // MARK: - Ending

    var endReason: QMPError? { state.withLock { $0.ended } }

    /// Ends the connection: every outstanding command and wait fails with `error`, the reader
    /// thread wakes (shutdown) and exits, the descriptor closes when the last owner lets go.
    func end(_ error: QMPError) {
        let (pending, sinks): ([PendingCommand], [Sink]) = state.withLock { state in
            guard state.ended == nil else { return ([], []) }
            state.ended = error
            defer {
                state.pending.removeAll()
                state.sinks.removeAll()
            }
            return (Array(state.pending.values), Array(state.sinks.values))
        }
        socket.shutdown()
        greeting.resolve(.failure(error))
        for command in pending { command.slot.resolve(.failure(error)) }
        for sink in sinks {
            switch sink {
            case .subscription(let box): box.subscription?.end(error)
            case .stream(let continuation): continuation.finish()
            }
        }
    }

    // MARK: - Reader

    private func readLoop() {
        var framer = QMPLineFramer()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
        defer { buffer.deallocate() }
        while endReason == nil {
            let count: Int
            do {
                count = try socket.read(into: buffer)
            } catch {
                end(error)
                return
            }
            if count == 0 {
                end(.disconnected(path: path, detail: endOfStreamDetail()))
                return
            }
            framer.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            while let line = framer.nextLine() {
                handle(line)
            }
            if framer.isOverLimit {
                end(.protocolViolation(path: path, detail: "a message longer than \(framer.limit) bytes without a newline"))
            }
        }
    }

    private func endOfStreamDetail() -> String {
        let outstanding = state.withLock { $0.pending.values.map(\.command) }
        return outstanding.isEmpty ? "" : "while waiting for the reply to \(outstanding.joined(separator: ", "))"
    }

    private func handle(_ line: ArraySlice<UInt8>) {
        if line.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }) { return }
        let message: QMPValue
        do {
            message = try QMPValue(json: Data(line))
        } catch {
            let text = String(decoding: line.prefix(200), as: UTF8.self)
            if !state.withLock({ $0.greeted }) {
                greeting.resolve(.failure(.notQMP(path: path, firstMessage: text)))
            }
            end(.protocolViolation(path: path, detail: "not JSON: \(text)"))
            return
        }
        if !state.withLock({ $0.greeted }) {
            guard let parsed = QMPGreeting(message: message) else {
                let failure = QMPError.notQMP(path: path, firstMessage: message.jsonString)
                greeting.resolve(.failure(failure))
                end(failure)
                return
            }
            state.withLock { $0.greeted = true }
            greeting.resolve(.success(parsed))
            return
        }
        if let event = QMPEvent(message: message) {
            deliver(event)
            return
        }
        let isReturn = message["return"] != nil
        guard isReturn || message["error"] != nil else { return }  // a kind of message QMP may add later
        let command: PendingCommand? = state.withLock { state in
            // QEMU echoes "id"; a reply without one (QEMU could not parse the request) answers
            // the oldest command, because QMP replies in order outside out-of-band mode.
            if let id = message["id"]?.int64Value { return state.pending.removeValue(forKey: id) }
            guard let oldest = state.pending.keys.min() else { return nil }
            return state.pending.removeValue(forKey: oldest)
        }
        // No command: the reply to one whose waiter gave up (timeout); nothing to do.
        guard let command else { return }
        if isReturn {
            command.slot.resolve(.success(message["return"] ?? .null))
        } else {
            let error = message["error"]
            command.slot.resolve(.failure(.commandFailed(
                command: command.command, errorClass: error?["class"]?.stringValue ?? "(no class)",
                description: error?["desc"]?.stringValue ?? error?.jsonString ?? "")))
        }
    }

    private func deliver(_ event: QMPEvent) {
        let sinks = state.withLock { Array($0.sinks.values) }
        for sink in sinks {
            switch sink {
            case .subscription(let box): box.subscription?.deliver(event)
            case .stream(let continuation): continuation.yield(event)
            }
        }
    }
}
