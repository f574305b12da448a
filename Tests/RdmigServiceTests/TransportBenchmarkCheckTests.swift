#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport
import Synchronization
import Testing

@testable import RdmigService

/// The transport benchmark's receiver counts and checks what landed in its window; these
/// cases make it see windows that do not hold what was sent.
@Suite("bench transport: the receiver's check of what landed")
struct TransportBenchmarkCheckTests {
    /// A window of `depth` slots as the sender leaves it after `messages` messages: the last
    /// message of each slot, stamped.
    static func window(depth: Int, messageSize: Int, messages: Int, nonce: UInt64) -> UnsafeMutableRawBufferPointer {
        let window = UnsafeMutableRawBufferPointer.allocate(byteCount: depth * messageSize, alignment: 64)
        window.initializeMemory(as: UInt8.self, repeating: 0)
        let stamp = BenchmarkMessageStamp(messageSize: messageSize)
        for sequence in 0..<messages {
            stamp.stamp(window.baseAddress! + (sequence % depth) * messageSize, nonce: nonce, sequence: UInt64(sequence))
        }
        return window
    }

    @Test func theStampWordsSpanTheMessageWithoutOverlapping() {
        let stamp = BenchmarkMessageStamp(messageSize: 65536)
        #expect(stamp.samples == 16)
        #expect(stamp.offset(ofSample: 0) == 0)
        #expect(stamp.offset(ofSample: 15) == 65536 - 8)
        let small = BenchmarkMessageStamp(messageSize: 20)
        #expect(small.samples == 2)
        #expect(small.offset(ofSample: 1) == 12)
        let one = BenchmarkMessageStamp(messageSize: 8)
        #expect(one.samples == 1)
        #expect(one.offset(ofSample: 0) == 0)
    }

    @Test(arguments: [(4, 64, 10), (4, 64, 3), (16, 4096, 16), (128, 8, 1000)])
    func aWindowHoldingEveryMessagePassesAndCountsThem(depth: Int, messageSize: Int, messages: Int) {
        let window = Self.window(depth: depth, messageSize: messageSize, messages: messages, nonce: 42)
        defer { window.deallocate() }
        let stamp = BenchmarkMessageStamp(messageSize: messageSize)
        let report = BenchmarkPlacementReport.check(window: window.baseAddress!, depth: depth, stamp: stamp, nonce: 42)
        #expect(report.placedMessages == UInt64(messages))
        #expect(report.checkedSlots == UInt64(min(depth, messages)))
        #expect(report.mismatchedSlots == 0)
        #expect(report.problem(sent: UInt64(messages), depth: depth, stamp: stamp) == nil)
        // Through the wire format and back.
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: BenchmarkPlacementReport.size, alignment: 8)
        defer { bytes.deallocate() }
        report.encode(into: bytes)
        #expect(BenchmarkPlacementReport.decode(bytes) == report)
    }

    @Test func aWindowNothingLandedInCountsNoMessages() {
        let window = Self.window(depth: 8, messageSize: 4096, messages: 0, nonce: 7)
        defer { window.deallocate() }
        let stamp = BenchmarkMessageStamp(messageSize: 4096)
        let report = BenchmarkPlacementReport.check(window: window.baseAddress!, depth: 8, stamp: stamp, nonce: 7)
        #expect(report.placedMessages == 0)
        let problem = report.problem(sent: 100, depth: 8, stamp: stamp)
        #expect(problem?.contains("it finds 0 of the 100 messages of 4096 bytes placed") == true)
    }

    /// The same slots written by an earlier run (another nonce) do not count for this one.
    @Test func anEarlierRunsBytesDoNotPassForThisRuns() {
        let window = Self.window(depth: 8, messageSize: 4096, messages: 100, nonce: 1)
        defer { window.deallocate() }
        let stamp = BenchmarkMessageStamp(messageSize: 4096)
        let report = BenchmarkPlacementReport.check(window: window.baseAddress!, depth: 8, stamp: stamp, nonce: 2)
        #expect(report.placedMessages == 0)
        #expect(report.problem(sent: 100, depth: 8, stamp: stamp) != nil)
    }

    @Test func aSlotStillHoldingAnOlderMessageIsNamed() {
        // 100 messages into 8 slots: slot 5 last got message 93, but holds 85.
        let window = Self.window(depth: 8, messageSize: 4096, messages: 100, nonce: 5)
        defer { window.deallocate() }
        let stamp = BenchmarkMessageStamp(messageSize: 4096)
        stamp.stamp(window.baseAddress! + 5 * 4096, nonce: 5, sequence: 85)
        let report = BenchmarkPlacementReport.check(window: window.baseAddress!, depth: 8, stamp: stamp, nonce: 5)
        #expect(report.placedMessages == 100)
        #expect(report.mismatchedSlots == 1)
        #expect(report.firstMismatchSlot == 5)
        #expect(report.firstMismatchExpected == 93)
        #expect(report.firstMismatchFound == 85)
        let problem = report.problem(sent: 100, depth: 8, stamp: stamp)
        #expect(problem?.contains("1 of the 8 slots it checked hold the wrong bytes, the first slot 5: expected message 93, found message 85") == true)
    }

    /// The slot of the last message kept the one before it: the count read from the window
    /// is one short.
    @Test func aMissingLastMessageShortensTheCount() {
        let window = Self.window(depth: 8, messageSize: 4096, messages: 100, nonce: 5)
        defer { window.deallocate() }
        let stamp = BenchmarkMessageStamp(messageSize: 4096)
        stamp.stamp(window.baseAddress! + 3 * 4096, nonce: 5, sequence: 91)
        let report = BenchmarkPlacementReport.check(window: window.baseAddress!, depth: 8, stamp: stamp, nonce: 5)
        #expect(report.placedMessages == 99)
        #expect(report.problem(sent: 100, depth: 8, stamp: stamp)?.contains("it finds 99 of the 100 messages") == true)
    }

    @Test func oneChangedStampWordMakesTheSlotMismatch() {
        let window = Self.window(depth: 8, messageSize: 4096, messages: 100, nonce: 9)
        defer { window.deallocate() }
        let stamp = BenchmarkMessageStamp(messageSize: 4096)
        let word = stamp.offset(ofSample: 7)
        window[2 * 4096 + word] ^= 0x80
        let report = BenchmarkPlacementReport.check(window: window.baseAddress!, depth: 8, stamp: stamp, nonce: 9)
        #expect(report.placedMessages == 100)
        #expect(report.mismatchedSlots == 1)
        #expect(report.firstMismatchSlot == 2)
        #expect(report.firstMismatchFound == BenchmarkPlacementReport.none)
        #expect(report.problem(sent: 100, depth: 8, stamp: stamp)?.contains("words that agree on no message") == true)
    }

    // MARK: Both ends over the tcp backend

    static let parameters = TransportBenchmarkParameters(messageSize: 4096, queueDepth: 8, totalBytes: 100 * 4096, signalInterval: 4)

    /// One run between a sender doing `fault` and a receiver on its own thread; the sender's
    /// outcome and the receiver's report.
    static func runOverTCP(fault: BenchmarkSenderFault?) throws -> (sender: Result<BenchmarkPlacementReport, TransportBenchmarkError>, receiver: BenchmarkPlacementReport?) {
        let parameters = Self.parameters
        let listener = try TCPTransport().listen(on: TransportEndpoint(host: "127.0.0.1", port: 0), options: parameters.transportOptions)
        defer { listener.close() }
        let window = UnsafeMutableRawBufferPointer.allocate(byteCount: parameters.ringBytes, alignment: 4096)
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: parameters.ringBytes, alignment: 4096)
        defer {
            window.deallocate()
            source.deallocate()
        }
        window.initializeMemory(as: UInt8.self, repeating: 0)
        TransportBenchmark.fillSource(source)
        let windowAddress = UInt(bitPattern: window.baseAddress)
        let received = Mutex<BenchmarkPlacementReport?>(nil)
        let receiver = try SystemThread(name: "bench-check-test") {
            let window = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: windowAddress), count: parameters.ringBytes)
            guard let connection = try? listener.accept(timeout: .seconds(10)) else { return }
            defer { connection.close() }
            do {
                let report = try TransportBenchmark.serve(connection, parameters: parameters, ring: window, nonce: 0xC0FFEE)
                received.withLock { $0 = report }
            } catch {
                Issue.record("the benchmark receiver failed: \(error)")
            }
        }
        let connection = try TCPTransport().connect(to: listener.localEndpoint, options: parameters.transportOptions)
        let outcome: Result<BenchmarkPlacementReport, TransportBenchmarkError>
        do {
            outcome = .success(try TransportBenchmark.run(connection, parameters: parameters, ring: source, fault: fault).report)
        } catch {
            outcome = .failure(error)
        }
        receiver.join()
        connection.close()
        return (outcome, received.withLock { $0 })
    }

    @Test func aCleanRunOverTCPIsCountedAndChecked() throws {
        let (sender, receiver) = try Self.runOverTCP(fault: nil)
        let report = try sender.get()
        #expect(report.placedMessages == 100)
        #expect(report.checkedSlots == 8)
        #expect(report.mismatchedSlots == 0)
        #expect(receiver == report)
    }

    /// Message 95 is the last one slot 7 gets: with its write moving no bytes, the slot keeps
    /// message 87 and the sender's run fails, naming the slot.
    @Test func aSkippedWriteFailsTheRun() throws {
        let (sender, receiver) = try Self.runOverTCP(fault: .skipWrite(sequence: 95))
        #expect(receiver?.mismatchedSlots == 1)
        #expect(receiver?.placedMessages == 100)
        guard case .failure(.dataMismatch(let text)) = sender else {
            Issue.record("the run with a skipped write ended \(sender)")
            return
        }
        #expect(text.contains("the first slot 7: expected message 95, found message 87"))
    }

    /// The last message corrupted: the highest intact slot says 99 were placed, not 100.
    @Test func aCorruptedWriteFailsTheRun() throws {
        let (sender, receiver) = try Self.runOverTCP(fault: .corruptWrite(sequence: 99))
        #expect(receiver?.placedMessages == 99)
        guard case .failure(.dataMismatch(let text)) = sender else {
            Issue.record("the run with a corrupted write ended \(sender)")
            return
        }
        #expect(text.contains("it finds 99 of the 100 messages"))
    }
}
