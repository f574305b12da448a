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

/// The window descriptor the receiver SENDs first: address, length, rkey and the run's nonce
/// for `BenchmarkMessageStamp` (little-endian).
struct BenchmarkWindowMessage {
    static let size = 32
    static func encode(_ window: RemoteWindow, nonce: UInt64, into buffer: UnsafeMutableRawPointer) {
        buffer.storeBytes(of: window.address.littleEndian, toByteOffset: 0, as: UInt64.self)
        buffer.storeBytes(of: window.length.littleEndian, toByteOffset: 8, as: UInt64.self)
        buffer.storeBytes(of: window.remoteKey.littleEndian, toByteOffset: 16, as: UInt32.self)
        buffer.storeBytes(of: nonce.littleEndian, toByteOffset: 24, as: UInt64.self)
    }

    static func decode(_ buffer: UnsafeRawPointer) -> (window: RemoteWindow, nonce: UInt64) {
        let window = RemoteWindow(
            address: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            length: UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            remoteKey: UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: 16, as: UInt32.self)))
        return (window, UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }
}

/// A test seam: what the sender does wrong to one message, so that a test sees the
/// receiver's check catch it.
enum BenchmarkSenderFault: Sendable, Equatable {
    /// The message's write is posted with no bytes: its id, signalling and ordering stay as
    /// they were, but nothing lands in the slot.
    case skipWrite(sequence: Int)
    /// One stamp word of the message is changed after stamping, as a corrupted write would be.
    case corruptWrite(sequence: Int)

    var skippedSequence: Int? {
        if case .skipWrite(let sequence) = self { return sequence }
        return nil
    }

    var corruptedSequence: Int? {
        if case .corruptWrite(let sequence) = self { return sequence }
        return nil
    }
}

public enum TransportBenchmarkError: Error, CustomStringConvertible {
    case transport(TransportError, during: String)
    case completionFailed(Completion, during: String, failure: TransportError?)
    case timedOut(String)
    case system(SystemCallError)
    case peer(String)
    /// The receiver's window does not hold what the sender wrote (`BenchmarkPlacementReport`).
    case dataMismatch(String)

    public var description: String {
        switch self {
        case .transport(let error, let during): return "\(during): \(error)"
        case .completionFailed(let completion, let during, let failure):
            let why = failure.map { ": \($0)" } ?? ""
            return "\(during): work request \(completion.id) completed with \(completion.status)\(why)"
        case .timedOut(let what): return "timed out \(what)"
        case .system(let error): return error.description
        case .peer(let text): return text
        case .dataMismatch(let text): return text
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
    /// reused across runs) as the window with a fresh nonce, tells the sender, waits for the
    /// final immediate, checks what landed (`BenchmarkPlacementReport`) and answers with that.
    /// A window that does not hold what the sender wrote is the sender's error to report.
    public static func serve(
        _ connection: any TransportConnection, parameters: TransportBenchmarkParameters, ring: UnsafeMutableRawBufferPointer
    ) throws(TransportBenchmarkError) {
        _ = try serve(connection, parameters: parameters, ring: ring, nonce: .random(in: 0 ... .max))
    }

    static func serve(
        _ connection: any TransportConnection, parameters: TransportBenchmarkParameters, ring: UnsafeMutableRawBufferPointer,
        nonce: UInt64
    ) throws(TransportBenchmarkError) -> BenchmarkPlacementReport {
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
            BenchmarkWindowMessage.encode(window.window(), nonce: nonce, into: control.baseAddress!)
            try connection.postSend(controlRegistration.slice(offset: 0, length: BenchmarkWindowMessage.size), id: controlSendID, signaled: true)
        } catch {
            throw .transport(error, during: "benchmark receiver setup")
        }
        // Both at once: a short run's last write can arrive before the peer's ACK completes
        // the window SEND, and waiting for one would drop the other's completion.
        try waitFor(connection, ids: [controlSendID, doneReceiveID], during: "sending the window and waiting for the sender's last write")
        let stamp = BenchmarkMessageStamp(messageSize: parameters.messageSize)
        let report = BenchmarkPlacementReport.check(
            window: UnsafeRawPointer(ring.baseAddress!), depth: parameters.queueDepth, stamp: stamp, nonce: nonce)
        do {
            report.encode(into: control.baseAddress! + 64)
            try connection.postSend(controlRegistration.slice(offset: 64, length: BenchmarkPlacementReport.size), id: controlSendID, signaled: true)
        } catch {
            throw .transport(error, during: "benchmark receiver answer")
        }
        try waitFor(connection, id: controlSendID, during: "answering the sender")
        _ = try? connection.deregister(window)
        return report
    }

    /// Sender: keeps the queue full of writes from `ring` (at least `parameters.ringBytes`,
    /// owned by the caller, filled once, reused across runs; each slot is stamped for its
    /// message right before the write) until `totalBytes` moved; returns the time from the
    /// first post to the receiver's answer, once that answer shows every message placed.
    public static func run(
        _ connection: any TransportConnection, parameters: TransportBenchmarkParameters, ring: UnsafeMutableRawBufferPointer
    ) throws(TransportBenchmarkError) -> Duration {
        try run(connection, parameters: parameters, ring: ring, fault: nil).elapsed
    }

    static func run(
        _ connection: any TransportConnection, parameters: TransportBenchmarkParameters, ring: UnsafeMutableRawBufferPointer,
        fault: BenchmarkSenderFault?
    ) throws(TransportBenchmarkError) -> (elapsed: Duration, report: BenchmarkPlacementReport) {
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
        let (window, nonce) = BenchmarkWindowMessage.decode(control.baseAddress!)
        guard window.length >= UInt64(parameters.ringBytes) else {
            throw .peer("receiver window of \(window.length) bytes is smaller than the \(parameters.ringBytes)-byte ring")
        }

        let depth = parameters.queueDepth
        let interval = parameters.transportOptions.effectiveSignalInterval
        let total = parameters.messageCount
        let size = parameters.messageSize
        let stamp = BenchmarkMessageStamp(messageSize: size)
        let skipped = fault?.skippedSequence
        let corrupted = fault?.corruptedSequence
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
                    // The slot's previous write completed (at most `depth` are in flight), so
                    // its bytes may change now.
                    stamp.stamp(ring.baseAddress! + slot * size, nonce: nonce, sequence: UInt64(posted))
                    if posted == corrupted {
                        let word = ring.baseAddress! + slot * size + stamp.offset(ofSample: stamp.samples / 2)
                        word.storeBytes(of: word.load(as: UInt8.self) ^ 0x01, as: UInt8.self)
                    }
                    let length = posted == skipped ? 0 : size
                    do throws(TransportError) {
                        try connection.postWrite(
                            source.slice(offset: slot * size, length: length),
                            to: window.slice(offset: UInt64(slot * size), length: length),
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
        let report = BenchmarkPlacementReport.decode(control.baseAddress! + 64)
        if let problem = report.problem(sent: UInt64(total), depth: depth, stamp: stamp) {
            throw .dataMismatch(problem)
        }
        return (elapsed, report)
    }

    /// Waits until the completion with `id` arrives; fails on any error completion.
    static func waitFor(_ connection: any TransportConnection, id: UInt64, during: String) throws(TransportBenchmarkError) {
        try waitFor(connection, ids: [id], during: during)
    }

    /// Waits until a completion with each of `ids` arrived (in any order); fails on any error
    /// completion. Others are dropped.
    static func waitFor(_ connection: any TransportConnection, ids: Set<UInt64>, during: String) throws(TransportBenchmarkError) {
        var waiting = ids
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
                waiting.remove(completion.id)
                if waiting.isEmpty { return }
            }
            if count == 0, let failure = connection.failure { throw .transport(failure, during: during) }
        }
        throw .timedOut(during)
    }
}
