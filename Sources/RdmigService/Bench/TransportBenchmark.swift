#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport

/// The transport bandwidth benchmark, in the manner of perftest's `ib_write_bw`: the sender
/// keeps `queueDepth` WRITEs of `messageSize` in flight into a ring of remote slots, signals
/// one in `signalInterval`, and the last write carries an immediate; the receiver answers with
/// a SEND once it has seen that immediate, so the clock stops only when every byte is visible
/// on the receiving side.
public struct TransportBenchmarkParameters: Sendable, Codable, Equatable {
    public var messageSize: Int
    public var queueDepth: Int
    public var totalBytes: UInt64
    public var signalInterval: Int
    /// `TransportOptions.trafficClass` (`--tos`).
    public var trafficClass: UInt8?
    /// `TransportOptions.socketBufferBytes` (`--tcp-buffer`), for the transport and the pump.
    public var socketBufferBytes: Int?

    public init(messageSize: Int, queueDepth: Int, totalBytes: UInt64, signalInterval: Int, trafficClass: UInt8? = nil,
                socketBufferBytes: Int? = nil) {
        self.messageSize = messageSize
        self.queueDepth = queueDepth
        self.totalBytes = totalBytes
        self.signalInterval = signalInterval
        self.trafficClass = trafficClass
        self.socketBufferBytes = socketBufferBytes
    }

    /// Number of writes: the total rounded up to whole messages.
    public var messageCount: Int { Int((totalBytes + UInt64(messageSize) - 1) / UInt64(messageSize)) }
    /// Bytes actually moved (whole messages).
    public var bytesMoved: UInt64 { UInt64(messageCount) * UInt64(messageSize) }
    /// The sender's source ring and the receiver's window: one slot per write in flight.
    public var ringBytes: Int { messageSize * queueDepth }

    public var transportOptions: TransportOptions {
        var options = TransportOptions()
        options.sendQueueDepth = queueDepth
        options.signalInterval = signalInterval
        options.receiveQueueDepth = 16
        options.trafficClass = trafficClass
        options.socketBufferBytes = socketBufferBytes
        return options
    }
}

/// The window descriptor the receiver SENDs first: address, length, rkey (little-endian).
struct BenchmarkWindowMessage {
    static let size = 20
    static func encode(_ window: RemoteWindow, into buffer: UnsafeMutableRawPointer) {
        buffer.storeBytes(of: window.address.littleEndian, toByteOffset: 0, as: UInt64.self)
        buffer.storeBytes(of: window.length.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: window.remoteKey.littleEndian, toByteOffset: 16, as: UInt32.self)
    }

    static func decode(_ buffer: UnsafeRawPointer) -> RemoteWindow {
        RemoteWindow(
            address: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            length: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            remoteKey: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
    }
}

public enum TransportBenchmarkError: Error, CustomStringConvertible {
    case transport(TransportError, during: String)
    case completionFailed(Completion, during: String, failure: TransportError?)
    case timedOut(String)
    case system(SystemCallError)
    case peer(String)

    public var description: String {
        switch self {
        case .transport(let error, let during): return "\(during): \(error)"
        case .completionFailed(let completion, let during, let failure):
            let why = failure.map { ": \($0)" } ?? ""
            return "\(during): work request \(completion.id) completed with \(completion.status)\(why)"
        case .timedOut(let what): return "timed out \(what)"
        case .system(let error): return error.description
        case .peer(let text): return text
        }
    }
}

/// Both ends of one benchmark run over a `TransportConnection`.
public enum TransportBenchmark {
    static let windowReceiveID: UInt64 = 1 << 62
    static let doneReceiveID: UInt64 = (1 << 62) + 1
    static let controlSendID: UInt64 = (1 << 62) + 2
    static let completionTimeout: Duration = .seconds(30)

    /// Fills the sender's ring with a pattern (every page written, so faulted in).
    public static func fillSource(_ ring: UnsafeMutableRawBufferPointer) {
        for index in 0..<ring.count { ring[index] = UInt8(truncatingIfNeeded: index &* 7 &+ 1) }
    }

    /// Receiver: exports `ring` (at least `parameters.ringBytes`, owned by the caller and
    /// reused across runs) as the window, tells the sender, waits for the final immediate,
    /// answers "done" with the byte count.
    public static func serve(
        _ connection: any TransportConnection, parameters: TransportBenchmarkParameters, ring: UnsafeMutableRawBufferPointer
    ) throws(TransportBenchmarkError) {
        precondition(ring.count >= parameters.ringBytes, "benchmark window smaller than the ring")
        let ring = UnsafeMutableRawBufferPointer(rebasing: ring[0..<parameters.ringBytes])
        let control = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { control.deallocate() }
        let window: MemoryRegistration
        let controlRegistration: MemoryRegistration
        do {
            window = try connection.register(ring, access: [.localWrite, .remoteWrite])
            controlRegistration = try connection.register(control, access: [.localWrite])
            // The receive for the final WRITE_WITH_IMM must be posted before the sender can write.
            try connection.postReceive(controlRegistration.slice(offset: 2048, length: 64), id: doneReceiveID)
            BenchmarkWindowMessage.encode(window.window(), into: control.baseAddress!)
            try connection.postSend(controlRegistration.slice(offset: 0, length: BenchmarkWindowMessage.size), id: controlSendID, signaled: true)
        } catch {
            throw .transport(error, during: "benchmark receiver setup")
        }
        try waitFor(connection, id: controlSendID, during: "sending the window to the sender")
        try waitFor(connection, id: doneReceiveID, during: "waiting for the sender's last write")
        do {
            control.storeBytes(of: UInt64(parameters.bytesMoved).littleEndian, toByteOffset: 64, as: UInt64.self)
            try connection.postSend(controlRegistration.slice(offset: 64, length: 8), id: controlSendID, signaled: true)
        } catch {
            throw .transport(error, during: "benchmark receiver answer")
        }
        try waitFor(connection, id: controlSendID, during: "answering the sender")
        _ = try? connection.deregister(window)
    }

    /// Sender: keeps the queue full of writes from `ring` (at least `parameters.ringBytes`,
    /// owned by the caller, filled once, reused across runs) until `totalBytes` moved; returns
    /// the time from the first post to the receiver's answer.
    public static func run(
        _ connection: any TransportConnection, parameters: TransportBenchmarkParameters, ring: UnsafeMutableRawBufferPointer
    ) throws(TransportBenchmarkError) -> Duration {
        precondition(ring.count >= parameters.ringBytes, "benchmark source smaller than the ring")
        let ring = UnsafeMutableRawBufferPointer(rebasing: ring[0..<parameters.ringBytes])
        let control = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 64)
        defer { control.deallocate() }
        let source: MemoryRegistration
        let controlRegistration: MemoryRegistration
        do {
            source = try connection.register(ring, access: [.localWrite])
            controlRegistration = try connection.register(control, access: [.localWrite])
            try connection.postReceive(controlRegistration.slice(offset: 0, length: 64), id: windowReceiveID)
            try connection.postReceive(controlRegistration.slice(offset: 64, length: 64), id: doneReceiveID)
        } catch {
            throw .transport(error, during: "benchmark sender setup")
        }
        try waitFor(connection, id: windowReceiveID, during: "waiting for the receiver's window")
        let window = BenchmarkWindowMessage.decode(control.baseAddress!)
        guard window.length >= UInt64(parameters.ringBytes) else {
            throw .peer("receiver window of \(window.length) bytes is smaller than the \(parameters.ringBytes)-byte ring")
        }

        let depth = parameters.queueDepth
        let interval = parameters.transportOptions.effectiveSignalInterval
        let total = parameters.messageCount
        let size = parameters.messageSize
        var completions = [Completion](repeating: .empty, count: 16)
        var posted = 0
        var completed = 0
        var answered = false
        let clock = ContinuousClock()
        let start = clock.now
        try completions.withUnsafeMutableBufferPointer { (buffer: inout UnsafeMutableBufferPointer<Completion>) throws(TransportBenchmarkError) in
            while completed < total {
                while posted < total, posted - completed < depth {
                    let slot = posted % depth
                    let last = posted == total - 1
                    let signaled = last || (posted + 1) % interval == 0
                    do throws(TransportError) {
                        try connection.postWrite(
                            source.slice(offset: slot * size, length: size),
                            to: window.slice(offset: UInt64(slot * size), length: size),
                            id: UInt64(posted), signaled: signaled, immediate: last ? 1 : nil)
                    } catch {
                        throw .transport(error, during: "posting write \(posted)")
                    }
                    posted += 1
                }
                let count = connection.waitForCompletions(into: buffer, timeout: completionTimeout)
                if count == 0 {
                    throw .timedOut("waiting for write completions (\(completed) of \(total) done): \(connection.failure.map { "\($0)" } ?? "no failure reported")")
                }
                for completion in buffer.prefix(count) {
                    guard completion.status == .success else {
                        throw .completionFailed(completion, during: "writing", failure: connection.failure)
                    }
                    if completion.kind == .write { completed = max(completed, Int(completion.id) + 1) }
                    if completion.id == doneReceiveID { answered = true }
                }
            }
        }
        if !answered { try waitFor(connection, id: doneReceiveID, during: "waiting for the receiver's answer") }
        let elapsed = clock.now - start
        let reported = UInt64(littleEndian: control.loadUnaligned(fromByteOffset: 64, as: UInt64.self))
        guard reported == parameters.bytesMoved else {
            throw .peer("receiver reports \(reported) bytes, sender moved \(parameters.bytesMoved)")
        }
        return elapsed
    }

    /// Waits until the completion with `id` arrives; fails on any error completion.
    static func waitFor(_ connection: any TransportConnection, id: UInt64, during: String) throws(TransportBenchmarkError) {
        var completions = [Completion](repeating: .empty, count: 16)
        let clock = ContinuousClock()
        let deadline = clock.now + completionTimeout
        while clock.now < deadline {
            let count = completions.withUnsafeMutableBufferPointer {
                connection.waitForCompletions(into: $0, timeout: .milliseconds(100))
            }
            for completion in completions.prefix(count) {
                guard completion.status == .success else {
                    throw .completionFailed(completion, during: during, failure: connection.failure)
                }
                if completion.id == id { return }
            }
            if count == 0, let failure = connection.failure { throw .transport(failure, during: during) }
        }
        throw .timedOut(during)
    }
}
