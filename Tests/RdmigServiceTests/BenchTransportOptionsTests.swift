import Foundation
import RdmigMemory
import RdmigSystem
import Testing

@testable import RdmigService

@Suite("bench transport: buffer options")
struct BenchTransportOptionsTests {
    @Test func buffersDefaultToMallocWithoutNodeOrHugePageChoice() throws {
        let options = try TransportBenchmarkOptions.parse([])
        #expect(options.buffers == .malloc)
        #expect(options.node == nil)
        #expect(options.hugePages == nil)
    }

    @Test func nodeAndHugePagesAreRefusedWithMallocBuffers() {
        #expect(throws: (any Error).self) { try TransportBenchmarkOptions.parse(["--node", "0"]) }
        #expect(throws: (any Error).self) { try TransportBenchmarkOptions.parse(["--buffers", "malloc", "--huge-pages", "off"]) }
        do {
            _ = try TransportBenchmarkOptions.parse(["--node", "0"])
            Issue.record("--node was accepted with malloc buffers")
        } catch {
            #expect(TransportBenchmarkOptions.message(for: error).contains("--node and --huge-pages apply to --buffers pool only"))
        }
    }

    @Test func poolBuffersNeedMessagesOfAtLeastOneSlab() throws {
        #expect(throws: (any Error).self) {
            try TransportBenchmarkOptions.parse(["--buffers", "pool", "--message-size", "32B", "--total", "1MiB"])
        }
        let options = try TransportBenchmarkOptions.parse(["--buffers", "pool", "--message-size", "64B", "--total", "1MiB"])
        #expect(options.buffers == .pool)
    }

    @Test func tosReachesTheTransportOptionsAndTheReceiverAndIsRangeChecked() throws {
        let options = try TransportBenchmarkOptions.parse(["--tos", "104"])
        #expect(options.parameters.transportOptions.trafficClass == 104)
        #expect(options.receiverArguments.suffix(2) == ["--tos", "104"])
        #expect(try TransportBenchmarkOptions.parse([]).parameters.transportOptions.trafficClass == nil)
        do {
            _ = try TransportBenchmarkOptions.parse(["--tos", "256"])
            Issue.record("--tos 256 was accepted")
        } catch {
            #expect(TransportBenchmarkOptions.message(for: error).contains("--tos 256: use 0 … 255"))
        }
    }

    @Test func tcpBufferAndReceiverNetnsReachTheReceiver() throws {
        let options = try TransportBenchmarkOptions.parse(["--tcp-buffer", "4MiB", "--receiver-netns", "far"])
        #expect(options.parameters.transportOptions.socketBufferBytes == 4 << 20)
        let arguments = options.receiverArguments
        #expect(arguments.firstIndex(of: "--tcp-buffer").map { arguments[$0 + 1] } == "\(4 << 20)")
        #expect(arguments.firstIndex(of: "--receiver-netns").map { arguments[$0 + 1] } == "far")
        // auto is the default on both sides, so it is not passed.
        #expect(try TransportBenchmarkOptions.parse([]).parameters.transportOptions.socketBufferBytes == nil)
        #expect(try !TransportBenchmarkOptions.parse([]).receiverArguments.contains("--tcp-buffer"))
        #expect(throws: (any Error).self) { try TransportBenchmarkOptions.parse(["--tcp-buffer", "1KiB"]) }
    }

    @Test func unknownBufferKindAndBadPoolSettingsAreRefused() {
        #expect(throws: (any Error).self) { try TransportBenchmarkOptions.parse(["--buffers", "hugetlb"]) }
        #expect(throws: (any Error).self) { try TransportBenchmarkOptions.parse(["--buffers", "pool", "--huge-pages", "big"]) }
        #expect(throws: (any Error).self) { try TransportBenchmarkOptions.parse(["--buffers", "pool", "--node", "-1"]) }
    }

    @Test func theReceiverIsStartedWithTheSameBufferOptions() throws {
        let sender = try TransportBenchmarkOptions.parse([
            "--buffers", "pool", "--node", "0", "--huge-pages", "off", "--message-size", "1MiB",
            "--queue-depth", "16", "--total", "64MiB", "--runs", "5", "--signal-interval", "4",
            "--baseline-buffer", "ring",
        ])
        let receiver = try TransportBenchmarkOptions.parse(sender.receiverArguments)
        #expect(receiver.buffers == .pool)
        #expect(receiver.node == .node(0))
        #expect(receiver.hugePages == .off)
        #expect(receiver.parameters == sender.parameters)
        #expect(receiver.runs == 5)
        #expect(receiver.baselineBuffer == .ring)

        let plain = try TransportBenchmarkOptions.parse(["--message-size", "4KiB"])
        #expect(!plain.receiverArguments.contains("--node"))
        #expect(!plain.receiverArguments.contains("--huge-pages"))
        #expect(try TransportBenchmarkOptions.parse(plain.receiverArguments).buffers == .malloc)
        #expect(try TransportBenchmarkOptions.parse(plain.receiverArguments).baselineBuffer == .message)
    }

    @Test func thePumpBufferIsOneMessageOrTheTransportsRing() {
        #expect(BaselineBufferKind.message.bytes(messageSize: 65536, queueDepth: 128) == 65536)
        #expect(BaselineBufferKind.ring.bytes(messageSize: 65536, queueDepth: 128) == 8 << 20)
    }

    @Test func theLargeWritePumpSends1MiBWhateverTheMessageSizeAndItsRingHoldsAtLeastOneWrite() {
        #expect(BaselinePump.largeWrite.writeSize(messageSize: 4096) == 1 << 20)
        #expect(BaselinePump.messageSize.writeSize(messageSize: 4096) == 4096)
        #expect(BaselineBufferKind.message.bytes(writeSize: 1 << 20, messageSize: 65536, queueDepth: 128) == 1 << 20)
        #expect(BaselineBufferKind.ring.bytes(writeSize: 1 << 20, messageSize: 65536, queueDepth: 128) == 8 << 20)
        #expect(BaselineBufferKind.ring.bytes(writeSize: 1 << 20, messageSize: 4096, queueDepth: 16) == 1 << 20)
    }

    @Test func messagesSmallerThanOneStampWordAreRefused() throws {
        #expect(throws: (any Error).self) { try TransportBenchmarkOptions.parse(["--message-size", "4B", "--total", "1MiB"]) }
        #expect(try TransportBenchmarkOptions.parse(["--message-size", "8B", "--total", "1MiB"]).parameters.messageSize == 8)
    }
}

@Suite("bench transport: benchmark buffers")
struct BenchmarkRingTests {
    @Test func mallocRingIsUnlockedAndSaysWhichPagesItGets() throws {
        let ring = try BenchmarkRing(
            kind: .malloc, slotSize: 4096, slots: 4, node: .auto, hugePages: .auto, device: nil, role: "sender")
        #expect(ring.bytes.count == 16384)
        #expect(ring.report.kind == .malloc)
        #expect(ring.report.lockedBytes == 0)
        #expect(ring.report.node == nil)
        #expect(ring.report.pageSizeReason?.contains("pages") == true)
    }

    @Test func poolRingIsPinnedOnANodeAndExplainsItsPageSize() throws {
        let ring = try BenchmarkRing(
            kind: .pool, slotSize: 64 << 10, slots: 4, node: .auto, hugePages: .auto, device: nil, role: "receiver")
        #expect(ring.bytes.count >= 256 << 10)
        #expect(ring.report.kind == .pool)
        #expect(ring.report.lockedBytes >= 256 << 10)
        #expect(ring.report.node != nil)
        // Either huge pages were used, or the report says why not.
        #expect(ring.report.pageSize > 4096 || ring.report.fallbackReason != nil)
        // The kernel's own count; other tests in this process may lock more, never less.
        #expect((MemlockLimit.lockedBytes() ?? 0) >= ring.report.lockedBytes)
        ring.bytes.storeBytes(of: 0xA5, toByteOffset: ring.bytes.count - 1, as: UInt8.self)
    }

    @Test func poolRingWithHugePagesOffSaysSo() throws {
        let ring = try BenchmarkRing(
            kind: .pool, slotSize: 4096, slots: 2, node: .auto, hugePages: .off, device: nil, role: "sender")
        #expect(ring.report.pageSize == 4096)
        #expect(ring.report.fallbackReason == nil)
        #expect(ring.report.pageSizeReason == "huge pages off")
    }

    @Test func aNodeThisMachineLacksIsAClearError() {
        do {
            _ = try BenchmarkRing(
                kind: .pool, slotSize: 4096, slots: 2, node: .node(4095), hugePages: .off, device: nil, role: "sender")
            Issue.record("a pool on node 4095 was built")
        } catch {
            #expect(error.description.contains("--buffers pool: building the sender's"))
            #expect(error.description.contains("NUMA node 4095 does not exist"))
        }
    }

    @Test func aMemlockRefusalNamesTheLimitTheFixAndTheUnpinnedAlternative() {
        let error = MemoryError.memlockLimit(requested: 16 << 20, limit: 8 << 20, alreadyLocked: 0, errno: ENOMEM)
        let message = BenchmarkRing.poolFailure(error, role: "sender", slotSize: 64 << 10, slots: 256)
        #expect(message.contains("sender's 16.00 MiB ring (256 slots of 64KiB)"))
        #expect(message.contains("memlock limit 8.00 MiB"))
        #expect(message.contains("CAP_IPC_LOCK"))
        #expect(message.hasSuffix("--buffers malloc"))
        let other = BenchmarkRing.poolFailure(.noSuchNode(requested: 2, existing: [0]), role: "receiver", slotSize: 4096, slots: 1)
        #expect(!other.contains("--buffers malloc"))
    }

    @Test func transparentHugePageModeIsTheBracketedChoice() {
        #expect(BenchmarkRing.selectedMode("always [madvise] never") == "madvise")
        #expect(BenchmarkRing.selectedMode("[always] madvise never") == "always")
        #expect(BenchmarkRing.selectedMode("always madvise never") == nil)
    }

    @Test func theJSONResultNamesTheBufferKindAndPageSize() throws {
        let buffer = BenchmarkBufferReport(
            kind: .pool, size: 1 << 20, pageSize: 4096, node: 0, nodeReason: "the only node", lockedBytes: 1 << 20,
            pageSizeReason: nil, fallbackReason: "4 KiB pages: no 2 MiB huge pages")
        let largeWrite = TransportBenchmarkResult.PumpMeasurement(
            seconds: 0.25, bytesPerSecond: 4, samples: [4, 3, 5], writeSize: 1 << 20, bufferSize: 1 << 20, ratio: 0.5)
        let message = TransportBenchmarkResult.PumpMeasurement(
            seconds: 0.5, bytesPerSecond: 2, samples: [2, 2, 1], writeSize: 65536, bufferSize: 65536, ratio: 1)
        let result = TransportBenchmarkResult(
            backend: "tcp", backendReason: "test", messageSize: 65536, queueDepth: 16, bytes: 1 << 30, runs: 3,
            samples: [2, 1, 3], largeWritePump: largeWrite, messagePump: message, buffers: .pool,
            senderBuffer: buffer, receiverBuffer: buffer, baselineBuffer: .message,
            receiverPlacedBytes: 1 << 30, receiverCheckedWords: 256)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(JSONText.encode(result).utf8)) as? [String: Any])
        #expect(object["buffers"] as? String == "pool")
        #expect(object["buffer-page-size"] as? Int == 4096)
        #expect(object["buffer-fallback-reason"] as? String == "4 KiB pages: no 2 MiB huge pages")
        let receiver = try #require(object["receiver-buffer"] as? [String: Any])
        #expect(receiver["locked-bytes"] as? Int == 1 << 20)
        #expect(object["baseline-buffer"] as? String == "message")
    }

    /// Scripts read `ratio` and `baseline-*`: they are the large-write pump's, and each pump
    /// has its own keys too.
    @Test func theLeadingRatioAndTheBaselineKeysAreTheLargeWritePumps() throws {
        let buffer = BenchmarkBufferReport(
            kind: .malloc, size: 1 << 23, pageSize: 4096, node: nil, nodeReason: nil, lockedBytes: 0,
            pageSizeReason: nil, fallbackReason: nil)
        let largeWrite = TransportBenchmarkResult.PumpMeasurement(
            seconds: 0.25, bytesPerSecond: 4, samples: [4, 3, 5], writeSize: 1 << 20, bufferSize: 1 << 20, ratio: 0.5)
        let message = TransportBenchmarkResult.PumpMeasurement(
            seconds: 0.5, bytesPerSecond: 2, samples: [2, 2, 1], writeSize: 65536, bufferSize: 65536, ratio: 1)
        let result = TransportBenchmarkResult(
            backend: "tcp", backendReason: "test", messageSize: 65536, queueDepth: 128, bytes: 1 << 30, runs: 3,
            samples: [2, 1, 3], largeWritePump: largeWrite, messagePump: message, buffers: .malloc,
            senderBuffer: buffer, receiverBuffer: buffer, baselineBuffer: .message,
            receiverPlacedBytes: 1 << 30, receiverCheckedWords: 2048)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(JSONText.encode(result).utf8)) as? [String: Any])
        #expect(object["bytes-per-second"] as? Double == 2)
        #expect(object["ratio"] as? Double == 0.5)
        #expect(object["baseline-pump"] as? String == "large-write")
        #expect(object["baseline-bytes-per-second"] as? Double == 4)
        #expect(object["baseline-bytes-per-second-samples"] as? [Double] == [4, 3, 5])
        #expect(object["baseline-write-size"] as? Int == 1 << 20)
        #expect(object["large-write-pump-bytes-per-second"] as? Double == 4)
        #expect(object["large-write-pump-ratio"] as? Double == 0.5)
        #expect(object["message-pump-bytes-per-second"] as? Double == 2)
        #expect(object["message-pump-bytes-per-second-samples"] as? [Double] == [2, 2, 1])
        #expect(object["message-pump-write-size"] as? Int == 65536)
        #expect(object["message-pump-ratio"] as? Double == 1)
        #expect(object["receiver-placed-bytes"] as? Int == 1 << 30)
        #expect(object["receiver-checked-words"] as? Int == 2048)
        let text = BenchTransportCommand.text(result)
        #expect(text.contains("0.500 against the large-write pump (1.000 against the message-size pump)"))
    }
}
