import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import RdmigMemory
import RdmigSystem
import RdmigTransport

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure rdmig against a baseline run in the same invocation.",
        subcommands: [BenchTransportCommand.self, BenchTransportReceiverCommand.self, BenchPinCommand.self])
}

/// Options both processes of the transport benchmark must agree on.
struct TransportBenchmarkOptions: ParsableArguments {
    @Option(help: "Transport backend: tcp or verbs (default: what the address selects).")
    var backend: TransportBackendKind?

    @Option(name: .customLong("message-size"), help: "Bytes per WRITE, e.g. 4KiB … 4MiB.")
    var messageSize: ByteCount = .kibibytes(64)

    @Option(name: .customLong("queue-depth"), help: "WRITEs kept in flight (perftest's tx_depth).")
    var queueDepth: Int = 128

    @Option(name: .customLong("signal-interval"), help: "Signal one WRITE in this many (perftest's cq_mod; capped at the queue depth).")
    var signalInterval: Int = 100

    @Option(help: "Bytes to move per run.")
    var total: ByteCount = .gibibytes(1)

    @Option(help: "Runs of each (transport and baseline), interleaved; the median is reported.")
    var runs: Int = 3

    @Option(help: "Local address both processes use.")
    var host: String = "127.0.0.1"

    @Option(help: "Sender ring and receiver window: malloc (plain allocation) or pool (pinned NUMA-local BufferPool).")
    var buffers: BenchmarkBufferKind = .malloc

    @Option(name: .customLong("baseline-buffer"), help: "Plain pump buffer per side: message (one message, stays in cache) or ring (queue depth × message size, the transport's footprint).")
    var baselineBuffer: BaselineBufferKind = .message

    @Option(help: "With --buffers pool: NUMA node, auto or N (default auto: the RDMA device's node, or the only node).",
            transform: { text in try NodeSelection(parsing: text) })
    var node: NodeSelection?

    @Option(name: .customLong("huge-pages"), help: "With --buffers pool: auto, off, 2M or 1G (default auto; falls back to 4 KiB pages and says why).",
            transform: { text in try HugePagePolicy(parsing: text) })
    var hugePages: HugePagePolicy?

    @Option(help: "IP type of service / traffic class, 0-255 (as rdmig source/dest --tos; perftest's --tos).")
    var tos: Int?

    @Flag(help: "Encrypt the transport's frames (tcp: AES-256-GCM, as `--encrypt on` in a migration) to measure what that costs.")
    var encrypt = false

    /// Fixed keys: the benchmark measures the cipher's cost and protects nothing.
    static func benchmarkKeys(sender: Bool) -> TransportEncryptionKeys {
        let forward = [UInt8](repeating: 0x5A, count: 32), backward = [UInt8](repeating: 0xA5, count: 32)
        return sender ? TransportEncryptionKeys(sendKey: forward, receiveKey: backward)
            : TransportEncryptionKeys(sendKey: backward, receiveKey: forward)
    }

    @Option(name: .customLong("tcp-buffer"), help: "tcp socket buffers of both the transport and the pump: auto (sized from tcp_rmem and the measured round trip) or a size such as 4MiB (as [transport] tcp-buffer).",
            transform: { text in try TCPBufferSetting(parsing: text) })
    var tcpBuffer: TCPBufferSetting = .auto

    @Option(name: .customLong("receiver-netns"), help: "Start the receiver process in this network namespace (a name `ip netns` made, e.g. across Perf/delay-line.c); --host is then its address there.")
    var receiverNetns: String?

    func validate() throws {
        if let tos, TransportOptions.trafficClass(tos) == nil {
            throw ValidationError("--tos \(tos): \(TransportOptions.trafficClassRange)")
        }
        guard messageSize.bytes >= 1, messageSize.bytes <= 1 << 30 else {
            throw ValidationError("--message-size \(messageSize) is out of range: use 1B … 1GiB")
        }
        guard (1...16384).contains(queueDepth) else {
            throw ValidationError("--queue-depth \(queueDepth) is out of range: use 1 … 16384")
        }
        guard signalInterval >= 1 else { throw ValidationError("--signal-interval must be at least 1") }
        guard total.bytes >= messageSize.bytes else {
            throw ValidationError("--total \(total) is smaller than one message of \(messageSize)")
        }
        guard (1...100).contains(runs) else { throw ValidationError("--runs \(runs) is out of range: use 1 … 100") }
        guard UInt64(queueDepth) * messageSize.bytes <= 4 << 30 else {
            throw ValidationError("--queue-depth × --message-size is \(ByteCount(UInt64(queueDepth) * messageSize.bytes)), above the 4GiB ring limit")
        }
        switch buffers {
        case .malloc:
            if node != nil || hugePages != nil {
                throw ValidationError("--node and --huge-pages apply to --buffers pool only")
            }
        case .pool:
            // BufferPool's smallest slab; one slab per write in flight.
            guard messageSize.bytes >= 64 else {
                throw ValidationError("--buffers pool needs --message-size of at least 64B (one pool slab per message)")
            }
        }
    }

    /// The plain pump's buffer in this process (always a plain allocation), faulted in.
    func makeBaselineBuffer() -> BaselineBuffer {
        BaselineBuffer(kind: baselineBuffer, messageSize: Int(messageSize.bytes), queueDepth: queueDepth)
    }

    /// The ring this process moves bytes from or into, built before any run.
    func makeRing(role: String, device: String?) throws(RdmigCommandError) -> BenchmarkRing {
        try BenchmarkRing(
            kind: buffers, slotSize: Int(messageSize.bytes), slots: queueDepth, node: node ?? .auto,
            hugePages: hugePages ?? .auto, device: device, role: role)
    }

    /// The options again, as the receiver process is started with them.
    var receiverArguments: [String] {
        var arguments = [
            "--message-size", "\(messageSize.bytes)", "--queue-depth", "\(queueDepth)",
            "--signal-interval", "\(signalInterval)", "--total", "\(total.bytes)",
            "--runs", "\(runs)", "--host", host, "--buffers", buffers.rawValue,
            "--baseline-buffer", baselineBuffer.rawValue,
        ]
        if let node { arguments += ["--node", node.description] }
        if let hugePages { arguments += ["--huge-pages", hugePages.rawValue] }
        if tcpBuffer != .auto { arguments += ["--tcp-buffer", tcpBuffer.description] }
        if let receiverNetns { arguments += ["--receiver-netns", receiverNetns] }
        if let tos { arguments += ["--tos", "\(tos)"] }
        if encrypt { arguments += ["--encrypt"] }
        return arguments
    }

    var parameters: TransportBenchmarkParameters {
        TransportBenchmarkParameters(
            messageSize: Int(messageSize.bytes), queueDepth: queueDepth,
            totalBytes: total.bytes, signalInterval: signalInterval, trafficClass: tos.flatMap(TransportOptions.trafficClass),
            socketBufferBytes: tcpBuffer.bytes)
    }
}

/// The result `--json` prints: one object, QMP-style kebab-case names, bytes and seconds.
struct TransportBenchmarkResult: Codable {
    var backend: String
    var backendReason: String
    var messageSize: Int
    var queueDepth: Int
    var bytes: UInt64
    var runs: Int
    var seconds: Double
    var bytesPerSecond: Double
    var baselineSeconds: Double
    var baselineBytesPerSecond: Double
    var ratio: Double
    var samples: [Double]
    var baselineSamples: [Double]
    var buffers: BenchmarkBufferKind
    /// The sender's page size (the receiver's is in `receiverBuffer`).
    var bufferPageSize: UInt64
    var bufferFallbackReason: String?
    var senderBuffer: BenchmarkBufferReport
    var receiverBuffer: BenchmarkBufferReport
    var baselineBuffer: BaselineBufferKind
    var baselineBufferSize: Int

    enum CodingKeys: String, CodingKey {
        case buffers
        case bufferPageSize = "buffer-page-size"
        case bufferFallbackReason = "buffer-fallback-reason"
        case senderBuffer = "sender-buffer"
        case receiverBuffer = "receiver-buffer"
        case baselineBuffer = "baseline-buffer"
        case baselineBufferSize = "baseline-buffer-size"
        case backend
        case backendReason = "backend-reason"
        case messageSize = "message-size"
        case queueDepth = "queue-depth"
        case bytes, runs, seconds
        case bytesPerSecond = "bytes-per-second"
        case baselineSeconds = "baseline-seconds"
        case baselineBytesPerSecond = "baseline-bytes-per-second"
        case ratio
        case samples = "bytes-per-second-samples"
        case baselineSamples = "baseline-bytes-per-second-samples"
    }
}

struct BenchTransportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "Transport bandwidth: a sender and a receiver process, against a plain TCP socket pump between the same endpoints.")

    @OptionGroup var options: TransportBenchmarkOptions

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let parameters = options.parameters
        let selection = try BackendChoice.select(host: options.host, forced: options.backend)
        // Before the receiver starts, so that a refused pool fails fast with its own message.
        let ring = try options.makeRing(role: "sender", device: selection.device)
        TransportBenchmark.fillSource(ring.bytes)
        let pumpBuffer = options.makeBaselineBuffer()
        let receiver = try BenchmarkReceiverProcess.start(options: options, backend: selection.kind)
        defer { receiver.stop() }

        var samples: [Double] = []
        var baselineSamples: [Double] = []
        let moved = Double(parameters.bytesMoved)
        do {
            for run in 0..<options.runs {
                // Alternate which goes first so neither always gets the warmer caches.
                let transportFirst = run % 2 == 1
                for measureTransport in transportFirst ? [true, false] : [false, true] {
                    if measureTransport {
                        let endpoint = TransportEndpoint(host: options.host, port: receiver.transportPort)
                        let connection: any TransportConnection
                        do {
                            connection = try selection.backend.connect(to: endpoint, options: parameters.transportOptions)
                        } catch {
                            throw RdmigCommandError("connecting to the benchmark receiver at \(endpoint): \(error)")
                        }
                        defer { connection.close() }
                        if options.encrypt {
                            guard try connection.startEncryption(TransportBenchmarkOptions.benchmarkKeys(sender: true)) else {
                                throw RdmigCommandError("--encrypt: the \(connection.backend) backend does not encrypt")
                            }
                        }
                        let elapsed = try TransportBenchmark.run(connection, parameters: parameters, ring: ring.bytes)
                        samples.append(moved / elapsed.seconds)
                    } else {
                        let endpoint = TransportEndpoint(host: options.host, port: receiver.pumpPort)
                        let elapsed = try PlainSocketPump.run(
                            to: endpoint, total: parameters.bytesMoved, messageSize: parameters.messageSize, buffer: pumpBuffer.bytes,
                            socketBufferBytes: parameters.socketBufferBytes)
                        baselineSamples.append(moved / elapsed.seconds)
                    }
                }
            }
        } catch {
            // A run fails when the receiver process did (it exited, so the sockets closed):
            // its own words say why.
            throw RdmigCommandError("\(error)\(receiver.stopAndTakeErrors().map { "; the benchmark receiver: \($0)" } ?? "")")
        }
        try receiver.waitForSuccess()

        let rate = median(samples)
        let baseline = median(baselineSamples)
        let result = TransportBenchmarkResult(
            backend: selection.kind.rawValue, backendReason: selection.reason,
            messageSize: parameters.messageSize, queueDepth: parameters.queueDepth,
            bytes: parameters.bytesMoved, runs: options.runs,
            seconds: moved / rate, bytesPerSecond: rate,
            baselineSeconds: moved / baseline, baselineBytesPerSecond: baseline,
            ratio: rate / baseline, samples: samples, baselineSamples: baselineSamples,
            buffers: options.buffers, bufferPageSize: ring.report.pageSize, bufferFallbackReason: ring.report.fallbackReason,
            senderBuffer: ring.report, receiverBuffer: receiver.buffer,
            baselineBuffer: options.baselineBuffer, baselineBufferSize: pumpBuffer.bytes.count)
        if json {
            print(try JSONText.encode(result))
        } else {
            print("""
                backend \(result.backend) (\(result.backendReason)), \(ByteCount(UInt64(result.messageSize))) messages, queue depth \(result.queueDepth), \(ByteCount.humanReadable(moved)) per run, median of \(result.runs)
                  rdmig \(result.backend):  \(ByteCount.humanReadable(rate))/s
                  plain TCP pump: \(ByteCount.humanReadable(baseline))/s (\(ByteCount(UInt64(pumpBuffer.bytes.count)).humanReadable) \(options.baselineBuffer == .message ? "buffer" : "ring") per side)
                  ratio:          \(formatFixed(result.ratio, decimals: 3))
                  sender buffer:   \(result.senderBuffer.text)
                  receiver buffer: \(result.receiverBuffer.text)
                """)
        }
    }
}

/// The receiving process (started by `bench transport`; not for direct use).
struct BenchTransportReceiverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport-receiver",
        abstract: "The receiving side of `rdmig bench transport` (started by it).",
        shouldDisplay: false)

    @OptionGroup var options: TransportBenchmarkOptions

    func run() throws {
        if let netns = options.receiverNetns {
            // Before any socket: sockets belong to the namespace of the thread that makes them,
            // and threads started from here on inherit it.
            do {
                try NetworkNamespace.enter(path: "/run/netns/\(netns)")
            } catch {
                throw RdmigCommandError("--receiver-netns \(netns): \(error)")
            }
        }
        let parameters = options.parameters
        let selection = try BackendChoice.select(host: options.host, forced: options.backend)
        let ring = try options.makeRing(role: "receiver", device: selection.device)
        ring.bytes.initializeMemory(as: UInt8.self, repeating: 0)
        let pumpBuffer = options.makeBaselineBuffer()
        let listener = try selection.backend.listen(on: TransportEndpoint(host: options.host, port: 0), options: parameters.transportOptions)
        defer { listener.close() }
        let pump = try PlainSocketPump.listen(
            on: TransportEndpoint(host: options.host, port: 0), socketBufferBytes: parameters.socketBufferBytes)
        defer { close(pump.descriptor) }
        printFlushed("ready \(listener.localEndpoint.port) \(pump.endpoint.port) \(try JSONText.encode(ring.report, pretty: false))")

        let pumpFailure = FailureBox()
        let pumpThread = try SystemThread(name: "bench-pump") {
            do {
                for _ in 0..<options.runs {
                    try PlainSocketPump.serve(
                        listener: pump.descriptor, total: parameters.bytesMoved, messageSize: parameters.messageSize,
                        buffer: pumpBuffer.bytes, socketBufferBytes: parameters.socketBufferBytes)
                }
            } catch {
                pumpFailure.set("plain pump receiver: \(error)")
            }
        }
        for _ in 0..<options.runs {
            let connection = try listener.accept(timeout: .seconds(60))
            defer { connection.close() }
            if options.encrypt { _ = try connection.startEncryption(TransportBenchmarkOptions.benchmarkKeys(sender: false)) }
            try TransportBenchmark.serve(connection, parameters: parameters, ring: ring.bytes)
        }
        pumpThread.join()
        if let failure = pumpFailure.value { throw RdmigCommandError(failure) }
    }
}

/// The receiver child process, the two ports it announced and the buffer it built.
final class BenchmarkReceiverProcess {
    let process: Process
    let transportPort: UInt16
    let pumpPort: UInt16
    let buffer: BenchmarkBufferReport
    let errors: Pipe

    private init(process: Process, transportPort: UInt16, pumpPort: UInt16, buffer: BenchmarkBufferReport, errors: Pipe) {
        self.process = process
        self.transportPort = transportPort
        self.pumpPort = pumpPort
        self.buffer = buffer
        self.errors = errors
    }

    static func start(options: TransportBenchmarkOptions, backend: TransportBackendKind) throws -> BenchmarkReceiverProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["bench", "transport-receiver", "--backend", backend.rawValue] + options.receiverArguments
        let output = Pipe()
        let errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        // The receiver's failures are read from `errors` and reported by the sender.
        try process.run()
        let line = readLine(from: output.fileHandleForReading)
        // "ready TRANSPORT-PORT PUMP-PORT {buffer report as one line of JSON}"
        let fields = line.split(separator: " ", maxSplits: 3)
        guard fields.count == 4, fields[0] == "ready", let transportPort = UInt16(fields[1]), let pumpPort = UInt16(fields[2]),
              let buffer = try? JSONDecoder().decode(BenchmarkBufferReport.self, from: Data(fields[3].utf8))
        else {
            process.waitUntilExit()
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw RdmigCommandError("the benchmark receiver did not start: \(message.isEmpty ? "printed '\(line)'" : message)")
        }
        return BenchmarkReceiverProcess(
            process: process, transportPort: transportPort, pumpPort: pumpPort, buffer: buffer, errors: errors)
    }

    func waitForSuccess() throws {
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw RdmigCommandError("the benchmark receiver failed (exit \(process.terminationStatus)): \(message)")
        }
    }

    func stop() {
        if process.isRunning { process.terminate() }
    }

    /// Stops the receiver (if it still runs) and returns what it wrote to stderr, if anything.
    func stopAndTakeErrors() -> String? {
        stop()
        process.waitUntilExit()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return message.isEmpty ? nil : message
    }

    private static func readLine(from handle: FileHandle) -> String {
        var bytes: [UInt8] = []
        while true {
            let data = handle.readData(ofLength: 1)
            guard let byte = data.first, byte != UInt8(ascii: "\n") else { break }
            bytes.append(byte)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var message: String?
    func set(_ text: String) { lock.withLock { message = text } }
    var value: String? { lock.withLock { message } }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}
