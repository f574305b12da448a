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

    @Option(name: .customLong("baseline-buffer"), help: "Plain pumps' buffer per side: message (one write, stays in cache) or ring (queue depth × message size, the transport's footprint).")
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
        // The receiver checks 8-byte stamp words in every message (BenchmarkMessageStamp).
        guard messageSize.bytes >= UInt64(BenchmarkMessageStamp.wordBytes), messageSize.bytes <= 1 << 30 else {
            throw ValidationError("--message-size \(messageSize) is out of range: use 8B … 1GiB")
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

    /// A plain pump's buffer in this process (always a plain allocation), faulted in.
    func makeBaselineBuffer(for pump: BaselinePump) -> BaselineBuffer {
        let size = Int(messageSize.bytes)
        return BaselineBuffer(kind: baselineBuffer, writeSize: pump.writeSize(messageSize: size), messageSize: size,
                              queueDepth: queueDepth)
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
///
/// `ratio` and the `baseline-*` keys compare against the large-write pump (`baseline-pump`),
/// the ceiling; the `message-pump-*` keys are the pump of message-size sends that `baseline-*`
/// meant before issue 14, the `large-write-pump-*` keys repeat the baseline under its own name.
struct TransportBenchmarkResult: Encodable {
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
    var baselinePump: BaselinePump = .largeWrite
    var baselineWriteSize: Int
    var largeWritePump: PumpMeasurement
    var messagePump: PumpMeasurement
    /// What the receiver found in its window after each transport run (equal in every run,
    /// or the run failed): bytes placed, and stamp words it compared.
    var receiverPlacedBytes: UInt64
    var receiverCheckedWords: Int

    /// One pump's figures, flattened into the result under its prefix.
    struct PumpMeasurement: Equatable {
        var seconds: Double
        var bytesPerSecond: Double
        var samples: [Double]
        var writeSize: Int
        var bufferSize: Int
        /// rdmig's median over this pump's.
        var ratio: Double
    }

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
        case baselinePump = "baseline-pump"
        case baselineWriteSize = "baseline-write-size"
        case receiverPlacedBytes = "receiver-placed-bytes"
        case receiverCheckedWords = "receiver-checked-words"
    }

    /// The keys of one pump: `large-write-pump-bytes-per-second`, `message-pump-ratio`, …
    private struct PumpKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
        init(_ prefix: String, _ name: String) { stringValue = "\(prefix)-\(name)" }
    }

    private static let pumpPrefixes = (largeWrite: "large-write-pump", message: "message-pump")

    init(backend: String, backendReason: String, messageSize: Int, queueDepth: Int, bytes: UInt64, runs: Int,
         samples: [Double], largeWritePump: PumpMeasurement, messagePump: PumpMeasurement,
         buffers: BenchmarkBufferKind, senderBuffer: BenchmarkBufferReport, receiverBuffer: BenchmarkBufferReport,
         baselineBuffer: BaselineBufferKind, receiverPlacedBytes: UInt64, receiverCheckedWords: Int) {
        self.backend = backend
        self.backendReason = backendReason
        self.messageSize = messageSize
        self.queueDepth = queueDepth
        self.bytes = bytes
        self.runs = runs
        self.samples = samples
        bytesPerSecond = median(samples)
        seconds = Double(bytes) / bytesPerSecond
        self.largeWritePump = largeWritePump
        self.messagePump = messagePump
        baselineSeconds = largeWritePump.seconds
        baselineBytesPerSecond = largeWritePump.bytesPerSecond
        baselineSamples = largeWritePump.samples
        baselineWriteSize = largeWritePump.writeSize
        baselineBufferSize = largeWritePump.bufferSize
        ratio = largeWritePump.ratio
        self.buffers = buffers
        bufferPageSize = senderBuffer.pageSize
        bufferFallbackReason = senderBuffer.fallbackReason
        self.senderBuffer = senderBuffer
        self.receiverBuffer = receiverBuffer
        self.baselineBuffer = baselineBuffer
        self.receiverPlacedBytes = receiverPlacedBytes
        self.receiverCheckedWords = receiverCheckedWords
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(backend, forKey: .backend)
        try container.encode(backendReason, forKey: .backendReason)
        try container.encode(messageSize, forKey: .messageSize)
        try container.encode(queueDepth, forKey: .queueDepth)
        try container.encode(bytes, forKey: .bytes)
        try container.encode(runs, forKey: .runs)
        try container.encode(seconds, forKey: .seconds)
        try container.encode(bytesPerSecond, forKey: .bytesPerSecond)
        try container.encode(samples, forKey: .samples)
        try container.encode(ratio, forKey: .ratio)
        try container.encode(baselinePump, forKey: .baselinePump)
        try container.encode(baselineWriteSize, forKey: .baselineWriteSize)
        try container.encode(baselineSeconds, forKey: .baselineSeconds)
        try container.encode(baselineBytesPerSecond, forKey: .baselineBytesPerSecond)
        try container.encode(baselineSamples, forKey: .baselineSamples)
        try container.encode(buffers, forKey: .buffers)
        try container.encode(bufferPageSize, forKey: .bufferPageSize)
        try container.encodeIfPresent(bufferFallbackReason, forKey: .bufferFallbackReason)
        try container.encode(senderBuffer, forKey: .senderBuffer)
        try container.encode(receiverBuffer, forKey: .receiverBuffer)
        try container.encode(baselineBuffer, forKey: .baselineBuffer)
        try container.encode(baselineBufferSize, forKey: .baselineBufferSize)
        try container.encode(receiverPlacedBytes, forKey: .receiverPlacedBytes)
        try container.encode(receiverCheckedWords, forKey: .receiverCheckedWords)
        var pumps = encoder.container(keyedBy: PumpKey.self)
        for (prefix, pump) in [(Self.pumpPrefixes.largeWrite, largeWritePump), (Self.pumpPrefixes.message, messagePump)] {
            try pumps.encode(pump.seconds, forKey: PumpKey(prefix, "seconds"))
            try pumps.encode(pump.bytesPerSecond, forKey: PumpKey(prefix, "bytes-per-second"))
            try pumps.encode(pump.samples, forKey: PumpKey(prefix, "bytes-per-second-samples"))
            try pumps.encode(pump.writeSize, forKey: PumpKey(prefix, "write-size"))
            try pumps.encode(pump.bufferSize, forKey: PumpKey(prefix, "buffer-size"))
            try pumps.encode(pump.ratio, forKey: PumpKey(prefix, "ratio"))
        }
    }
}

struct BenchTransportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "Transport bandwidth: a sender and a receiver process, against plain TCP socket pumps (1 MiB sends, and message-size sends) between the same endpoints.")

    @OptionGroup var options: TransportBenchmarkOptions

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let parameters = options.parameters
        let selection = try BackendChoice.select(host: options.host, forced: options.backend)
        // Before the receiver starts, so that a refused pool fails fast with its own message.
        let ring = try options.makeRing(role: "sender", device: selection.device)
        TransportBenchmark.fillSource(ring.bytes)
        let pumpBuffers = Dictionary(uniqueKeysWithValues: BaselinePump.allCases.map { ($0, options.makeBaselineBuffer(for: $0)) })
        let receiver = try BenchmarkReceiverProcess.start(options: options, backend: selection.kind)
        defer { receiver.stop() }

        var samples: [Double] = []
        var pumpSamples: [BaselinePump: [Double]] = [:]
        var placed: BenchmarkPlacementReport?
        let moved = Double(parameters.bytesMoved)
        do {
            for run in 0..<options.runs {
                // The transport runs between the two pumps, and which pump goes first
                // alternates, so each pump's run sits next to a transport run in time and
                // neither side of the leading ratio always gets the warmer caches.
                let order: [BaselinePump?] = run % 2 == 0 ? [.largeWrite, nil, .messageSize] : [.messageSize, nil, .largeWrite]
                for pump in order {
                    if let pump {
                        let endpoint = TransportEndpoint(host: options.host, port: receiver.pumpPorts[pump]!)
                        let buffer = pumpBuffers[pump]!
                        let elapsed = try PlainSocketPump.run(
                            to: endpoint, total: parameters.bytesMoved, writeSize: buffer.writeSize, buffer: buffer.bytes,
                            socketBufferBytes: parameters.socketBufferBytes)
                        pumpSamples[pump, default: []].append(moved / elapsed.seconds)
                        continue
                    }
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
                    let (elapsed, report) = try TransportBenchmark.run(connection, parameters: parameters, ring: ring.bytes, fault: nil)
                    samples.append(moved / elapsed.seconds)
                    placed = report
                }
            }
        } catch {
            // A run fails when the receiver process did (it exited, so the sockets closed):
            // its own words say why.
            throw RdmigCommandError("\(error)\(receiver.stopAndTakeErrors().map { "; the benchmark receiver: \($0)" } ?? "")")
        }
        try receiver.waitForSuccess()

        let rate = median(samples)
        func measurement(_ pump: BaselinePump) -> TransportBenchmarkResult.PumpMeasurement {
            let pumpRate = median(pumpSamples[pump] ?? [])
            let buffer = pumpBuffers[pump]!
            return .init(seconds: moved / pumpRate, bytesPerSecond: pumpRate, samples: pumpSamples[pump] ?? [],
                         writeSize: buffer.writeSize, bufferSize: buffer.bytes.count, ratio: rate / pumpRate)
        }
        let stamp = BenchmarkMessageStamp(messageSize: parameters.messageSize)
        let result = TransportBenchmarkResult(
            backend: selection.kind.rawValue, backendReason: selection.reason,
            messageSize: parameters.messageSize, queueDepth: parameters.queueDepth,
            bytes: parameters.bytesMoved, runs: options.runs, samples: samples,
            largeWritePump: measurement(.largeWrite), messagePump: measurement(.messageSize),
            buffers: options.buffers, senderBuffer: ring.report, receiverBuffer: receiver.buffer,
            baselineBuffer: options.baselineBuffer,
            receiverPlacedBytes: (placed?.placedMessages ?? 0) * UInt64(parameters.messageSize),
            receiverCheckedWords: Int(placed?.checkedSlots ?? 0) * stamp.samples)
        print(json ? try JSONText.encode(result) : Self.text(result))
    }

    /// The text report: the rates, then the ratio, against the large-write pump first.
    static func text(_ result: TransportBenchmarkResult) -> String {
        func pumpLine(_ measured: TransportBenchmarkResult.PumpMeasurement) -> String {
            let buffer = ByteCount(UInt64(measured.bufferSize)).humanReadable
            return "\(ByteCount.humanReadable(measured.bytesPerSecond))/s "
                + "(\(ByteCount(UInt64(measured.writeSize))) sends, \(buffer) \(result.baselineBuffer == .message ? "buffer" : "ring") per side)"
        }
        func line(_ label: String, _ value: String) -> String {
            "  " + label + String(repeating: " ", count: max(1, 31 - label.count)) + value
        }
        return ([
            "backend \(result.backend) (\(result.backendReason)), \(ByteCount(UInt64(result.messageSize))) messages, queue depth "
                + "\(result.queueDepth), \(ByteCount.humanReadable(Double(result.bytes))) per run, median of \(result.runs)",
            line("rdmig \(result.backend):", "\(ByteCount.humanReadable(result.bytesPerSecond))/s"),
            line("plain TCP, large-write pump:", pumpLine(result.largeWritePump)),
            line("plain TCP, message-size pump:", pumpLine(result.messagePump)),
            line("ratio:", "\(formatFixed(result.ratio, decimals: 3)) against the large-write pump "
                + "(\(formatFixed(result.messagePump.ratio, decimals: 3)) against the message-size pump)"),
            line("receiver check:", "\(ByteCount.humanReadable(Double(result.receiverPlacedBytes))) placed per run, "
                + "\(result.receiverCheckedWords) stamp words compared"),
            line("sender buffer:", result.senderBuffer.text),
            line("receiver buffer:", result.receiverBuffer.text),
        ] as [String]).joined(separator: "\n")
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
        let listener = try selection.backend.listen(on: TransportEndpoint(host: options.host, port: 0), options: parameters.transportOptions)
        defer { listener.close() }
        // One listener and one thread per pump, in BaselinePump.allCases order; the sender
        // connects to each once per run, in its own order.
        var pumpListeners: [Int32] = []
        defer { pumpListeners.forEach { close($0) } }
        var pumpPorts: [UInt16] = []
        for _ in BaselinePump.allCases {
            let pump = try PlainSocketPump.listen(
                on: TransportEndpoint(host: options.host, port: 0), socketBufferBytes: parameters.socketBufferBytes)
            pumpListeners.append(pump.descriptor)
            pumpPorts.append(pump.endpoint.port)
        }
        printFlushed("ready \(listener.localEndpoint.port) \(pumpPorts.map(String.init).joined(separator: " ")) "
            + (try JSONText.encode(ring.report, pretty: false)))

        let pumpFailure = FailureBox()
        var pumpThreads: [SystemThread] = []
        for (pump, descriptor) in zip(BaselinePump.allCases, pumpListeners) {
            let buffer = options.makeBaselineBuffer(for: pump)
            pumpThreads.append(try SystemThread(name: "bench-pump") {
                do {
                    for _ in 0..<options.runs {
                        try PlainSocketPump.serve(
                            listener: descriptor, total: parameters.bytesMoved, writeSize: buffer.writeSize,
                            buffer: buffer.bytes, socketBufferBytes: parameters.socketBufferBytes)
                    }
                } catch {
                    pumpFailure.set("\(pump.name) receiver: \(error)")
                }
            })
        }
        for _ in 0..<options.runs {
            let connection = try listener.accept(timeout: .seconds(60))
            defer { connection.close() }
            if options.encrypt { _ = try connection.startEncryption(TransportBenchmarkOptions.benchmarkKeys(sender: false)) }
            try TransportBenchmark.serve(connection, parameters: parameters, ring: ring.bytes)
        }
        pumpThreads.forEach { $0.join() }
        if let failure = pumpFailure.value { throw RdmigCommandError(failure) }
    }
}

/// The receiver child process, the ports it announced and the buffer it built.
final class BenchmarkReceiverProcess {
    let process: Process
    let transportPort: UInt16
    let pumpPorts: [BaselinePump: UInt16]
    let buffer: BenchmarkBufferReport
    let errors: Pipe

    private init(process: Process, transportPort: UInt16, pumpPorts: [BaselinePump: UInt16], buffer: BenchmarkBufferReport, errors: Pipe) {
        self.process = process
        self.transportPort = transportPort
        self.pumpPorts = pumpPorts
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
        // "ready TRANSPORT-PORT PUMP-PORT… {buffer report as one line of JSON}", a pump port
        // per BaselinePump.allCases.
        let pumps = BaselinePump.allCases
        let fields = line.split(separator: " ", maxSplits: 2 + pumps.count)
        let ports = fields.dropFirst().prefix(1 + pumps.count).compactMap { UInt16($0) }
        guard fields.count == 3 + pumps.count, fields[0] == "ready", ports.count == 1 + pumps.count,
              let buffer = try? JSONDecoder().decode(BenchmarkBufferReport.self, from: Data(fields[2 + pumps.count].utf8))
        else {
            process.waitUntilExit()
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw RdmigCommandError("the benchmark receiver did not start: \(message.isEmpty ? "printed '\(line)'" : message)")
        }
        return BenchmarkReceiverProcess(
            process: process, transportPort: ports[0], pumpPorts: Dictionary(uniqueKeysWithValues: zip(pumps, ports.dropFirst())),
            buffer: buffer, errors: errors)
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
