import RdmigSystem
import RdmigTransport
import Synchronization

/// Both ends of one connection made with the environment's backend, on its host and port 0:
/// `client` connected, `server` accepted. Memory made with `memory(...)` lives until both ends
/// are closed. Only the public Transport API is used. Public for checks outside the suite
/// that need a connected pair too (`rdmig selftest`'s verbs queue-pair check).
public final class ConformancePeers {
    let environment: ConformanceEnvironment
    let listener: any TransportListener
    public let client: any TransportConnection
    public let server: any TransportConnection
    private var memories: [ConformanceMemory] = []

    /// How long any single wait may take before the case fails: a failure guard, never a pacing.
    static let guardTime: Duration = .seconds(5)

    public init(_ environment: ConformanceEnvironment, options: TransportOptions? = nil) throws {
        self.environment = environment
        var options = options ?? environment.options
        options.connectTimeout = min(options.connectTimeout, ConformancePeers.guardTime)
        listener = try expectNoError("listen on \(environment.host):0") {
            try environment.backend.listen(on: TransportEndpoint(host: environment.host, port: 0), options: options)
        }
        do {
            (client, server) = try ConformancePeers.connect(environment.backend, to: listener, options: options)
        } catch {
            listener.close()
            throw error
        }
    }

    deinit {
        client.close()
        server.close()
        listener.close()
    }

    /// Connects once to `listener` while another thread accepts.
    static func connect(_ backend: any TransportBackend, to listener: any TransportListener,
                        options: TransportOptions) throws -> (client: any TransportConnection, server: any TransportConnection) {
        let accepted = Mutex<Result<any TransportConnection, TransportError>?>(nil)
        let acceptor = try expectNoError("start an accepting thread") {
            try SystemThread(name: "conformance-accept") {
                let result: Result<any TransportConnection, TransportError>
                do throws(TransportError) {
                    result = .success(try listener.accept(timeout: guardTime))
                } catch {
                    result = .failure(error)
                }
                accepted.withLock { $0 = result }
            }
        }
        let client: any TransportConnection
        do {
            client = try backend.connect(to: listener.localEndpoint, options: options)
        } catch {
            listener.close()
            acceptor.join()
            throw ConformanceFailure("connect to \(listener.localEndpoint) failed: \(error)")
        }
        acceptor.join()
        switch accepted.withLock({ $0 }) {
        case .success(let server)?:
            return (client, server)
        case .failure(let error)?:
            client.close()
            throw ConformanceFailure("accept on \(listener.localEndpoint) failed: \(error)")
        case nil:
            client.close()
            throw ConformanceFailure("accept on \(listener.localEndpoint) returned nothing")
        }
    }

    /// Memory that stays valid until both connections are closed.
    func memory(_ count: Int, fill: UInt8 = 0) -> ConformanceMemory {
        let memory = ConformanceMemory(count: count, fill: fill)
        memories.append(memory)
        return memory
    }

    /// Registers `memory[offset, offset+length)` on `connection`.
    func register(_ memory: ConformanceMemory, on connection: any TransportConnection, access: MemoryAccess,
                  offset: Int = 0, length: Int? = nil, file: String = #fileID, line: Int = #line) throws -> MemoryRegistration {
        let length = length ?? (memory.count - offset)
        return try expectNoError("register \(length) bytes", file: file, line: line) {
            try connection.register(memory.slice(offset, length), access: access)
        }
    }
}

/// Runs a Transport API call that must succeed; a thrown error becomes a failure naming `what`.
func expectNoError<T>(_ what: @autoclosure () -> String, file: String = #fileID, line: Int = #line,
                      _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let failure as ConformanceFailure {
        throw failure
    } catch {
        throw ConformanceFailure("\(what()) failed: \(error)", file: file, line: line)
    }
}

/// Posts a WR that races with a failure the peer is about to report: either the post succeeds
/// (then the WR must complete, flushed) or the connection has already failed and the post
/// throws `.connectionClosed`. Returns whether it was posted.
func postUnlessFailed(_ what: String, file: String = #fileID, line: Int = #line,
                      _ body: () throws -> Void) throws -> Bool {
    do {
        try body()
        return true
    } catch TransportError.connectionClosed {
        return false
    } catch {
        throw ConformanceFailure("\(what) failed: \(error)", file: file, line: line)
    }
}

/// Throws a failure unless `condition` holds.
func expect(_ condition: Bool, _ message: @autoclosure () -> String, file: String = #fileID, line: Int = #line) throws {
    if !condition { throw ConformanceFailure(message(), file: file, line: line) }
}

/// Runs `body`, which must fail with a `TransportError` that `matches`; returns the error.
@discardableResult
func expectTransportError<T>(_ what: String, file: String = #fileID, line: Int = #line,
                             matches: (TransportError) -> Bool, _ body: () throws -> T) throws -> TransportError {
    do {
        let value = try body()
        throw ConformanceFailure("\(what): expected an error, but it succeeded (\(value))", file: file, line: line)
    } catch let failure as ConformanceFailure {
        throw failure
    } catch let error as TransportError {
        try expect(matches(error), "\(what): unexpected error: \(error)", file: file, line: line)
        return error
    } catch {
        throw ConformanceFailure("\(what): threw a non-transport error: \(error)", file: file, line: line)
    }
}

/// Waits for exactly `count` completions on `connection` (each wait bounded by the guard time).
func completions(_ count: Int, on connection: any TransportConnection, _ what: String,
                 file: String = #fileID, line: Int = #line) throws -> [Completion] {
    var collected: [Completion] = []
    try collect(on: connection, what, file: file, line: line) { completion in
        collected.append(completion)
        return collected.count < count
    }
    return collected
}

/// Feeds completions of `connection` to `body` until it returns false. Fails when the guard
/// time passes without a completion.
func collect(on connection: any TransportConnection, _ what: String, file: String = #fileID, line: Int = #line,
             _ body: (Completion) throws -> Bool) throws {
    let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 1)
    defer { buffer.deallocate() }
    var seen = 0
    while true {
        let count = connection.waitForCompletions(into: buffer, timeout: ConformancePeers.guardTime)
        guard count == 1 else {
            throw ConformanceFailure("\(what): no completion within \(ConformancePeers.guardTime) after \(seen) "
                + "(connection failure: \(connection.failure.map { "\($0)" } ?? "none"))", file: file, line: line)
        }
        seen += 1
        if try !body(buffer[0]) { return }
    }
}

/// Throws unless nothing is waiting on `connection`'s completion queue right now.
func expectNoCompletion(on connection: any TransportConnection, _ what: String, file: String = #fileID, line: Int = #line) throws {
    let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 1)
    defer { buffer.deallocate() }
    let count = connection.pollCompletions(into: buffer)
    try expect(count == 0, "\(what): unexpected completion \(buffer[0])", file: file, line: line)
}

/// Throws unless `completion` is the one described.
func expectCompletion(_ completion: Completion, id: UInt64, kind: Completion.Kind, status: Completion.Status = .success,
                      _ what: String, file: String = #fileID, line: Int = #line) throws {
    try expect(completion.id == id && completion.kind == kind && completion.status == status,
               "\(what): expected completion id \(id) \(kind) \(status), got id \(completion.id) \(completion.kind) "
               + "\(completion.status)", file: file, line: line)
}
