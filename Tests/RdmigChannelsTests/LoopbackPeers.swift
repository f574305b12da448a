#if canImport(Glibc)
import Glibc
#endif
@testable import RdmigChannels
import RdmigSystem
import RdmigTransport
import Synchronization
import Testing

/// Runs `body` on its own thread (the two ends of a connection block in turn, so each test
/// drives one end from a `SystemThread`, never from the cooperative pool).
final class Background<Value: Sendable>: @unchecked Sendable {
    private let result = Mutex<Result<Value, any Error>?>(nil)
    private var thread: SystemThread?

    init(_ name: String, _ body: @escaping @Sendable () throws -> Value) throws {
        thread = try SystemThread(name: name) { [self] in
            let outcome = Result { try body() }
            result.withLock { $0 = outcome }
        }
    }

    func join() throws -> Value {
        thread?.join()
        return try result.withLock { $0! }.get()
    }
}

/// Two connected ends over the tcp backend on loopback, each with its router (and, unless
/// asked otherwise, its control channel): `source` connected, `destination` accepted.
final class LoopbackPeers: @unchecked Sendable {
    let source: any TransportConnection
    let destination: any TransportConnection
    let sourceRouter: CompletionRouter
    let destinationRouter: CompletionRouter
    let sourceControl: ControlChannel
    let destinationControl: ControlChannel
    /// Registered memory that must outlive the connections' threads: Swift may free a test's
    /// regions right after their last use, before the test's deferred `close()`, while the
    /// tcp sender thread is still in sendmsg on them (AddressSanitizer caught it,
    /// Tests/fuzz/README.md). `close()` lets go of them once the threads have stopped.
    private let keptUntilClosed = Mutex<[any AnyObject & Sendable]>([])

    func keepUntilClosed(_ object: any AnyObject & Sendable) {
        keptUntilClosed.withLock { $0.append(object) }
    }

    init(options: TransportOptions = TransportOptions(),
         routerConfiguration: CompletionRouter.Configuration = .init(),
         sourceControlConfiguration: ControlChannel.Configuration = .init(),
         destinationControlConfiguration: ControlChannel.Configuration = .init()) throws {
        let (source, destination) = try LoopbackPeers.connect(options: options)
        self.source = source
        self.destination = destination
        let accepted = try Background("test-dest-setup") { () -> (CompletionRouter, ControlChannel) in
            let router = try CompletionRouter(connection: destination, configuration: routerConfiguration)
            return (router, try ControlChannel(router: router, configuration: destinationControlConfiguration))
        }
        sourceRouter = try CompletionRouter(connection: source, configuration: routerConfiguration)
        sourceControl = try ControlChannel(router: sourceRouter, configuration: sourceControlConfiguration)
        (destinationRouter, destinationControl) = try accepted.join()
    }

    /// A connected pair without routers.
    static func connect(options: TransportOptions = TransportOptions()) throws -> (any TransportConnection, any TransportConnection) {
        let listener = try TCPTransport().listen(on: TransportEndpoint(host: "127.0.0.1", port: 0), options: options)
        defer { listener.close() }
        let endpoint = listener.localEndpoint
        let accepted = try Background("test-accept") { try listener.accept(timeout: .seconds(10)) as any TransportConnection }
        let source = try TCPTransport().connect(to: endpoint, options: options)
        return (source, try accepted.join())
    }

    func close() {
        sourceRouter.close()
        destinationRouter.close()
        source.close()
        destination.close()
        keptUntilClosed.withLock { $0.removeAll() }
    }
}

/// Page-aligned memory for test regions; freed when the test ends.
final class TestMemory: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    init(count: Int, fill: UInt8 = 0) {
        bytes = .allocate(byteCount: count, alignment: 4096)
        bytes.initializeMemory(as: UInt8.self, repeating: fill)
    }

    deinit { bytes.deallocate() }
}

/// A repeating byte pattern whose period (1 MiB + 13) matches no slot or chunk size, so any
/// byte delivered out of order, twice, or from an overwritten slot shows as a mismatch.
final class StreamPattern: @unchecked Sendable {
    static let period = (1 << 20) + 13
    let bytes: TestMemory

    init() {
        bytes = TestMemory(count: 2 * StreamPattern.period)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for index in 0..<(2 * StreamPattern.period) {
            if index < StreamPattern.period {
                state ^= state << 13
                state ^= state >> 7
                state ^= state << 17
                bytes.bytes[index] = UInt8(truncatingIfNeeded: state)
            } else {
                bytes.bytes[index] = bytes.bytes[index - StreamPattern.period]
            }
        }
    }

    /// The pattern's bytes for stream offset `offset`, `count` ≤ period bytes long.
    func slice(at offset: UInt64, count: Int) -> UnsafeRawBufferPointer {
        precondition(count <= StreamPattern.period)
        let start = Int(offset % UInt64(StreamPattern.period))
        return UnsafeRawBufferPointer(rebasing: bytes.bytes[start..<(start + count)])
    }

    func matches(_ data: UnsafeRawBufferPointer, at offset: UInt64) -> Bool {
        var done = 0
        while done < data.count {
            let count = min(data.count - done, StreamPattern.period)
            let expected = slice(at: offset + UInt64(done), count: count)
            if memcmp(expected.baseAddress!, data.baseAddress! + done, count) != 0 { return false }
            done += count
        }
        return true
    }
}
