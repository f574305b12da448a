import ArgumentParser
import Foundation
import Logging
import RdmigMigration
import RdmigSystem
import RdmigTransport

/// Options `rdmig source` and `rdmig dest` share.
struct ServiceOptions: ParsableArguments {
    @Option(help: "Config file (TOML; see conf/rdmig.toml). Default: $RDMIG_CONFIG, else built-in defaults.")
    var config: String?

    @Option(name: .customLong("key-file"), help: "Pre-shared key file (default: [auth] key-file, $RDMIG_KEY_FILE, or ~/.config/rdmig/psk, created on first use).")
    var keyFile: String?

    @Option(help: "Transport backend: tcp or verbs (default: verbs when the address is on an RDMA device).")
    var backend: TransportBackendKind?

    @Option(name: .customLong("peer-timeout"), help: "Longest wait for the peer, e.g. 60s.")
    var peerTimeout: String?

    @Option(name: .customLong("connect-timeout"), help: "How long connecting may take, refused attempts retried (source), e.g. 10s.")
    var connectTimeout: String?

    @Option(name: .customLong("resolve-timeout"), help: "How long a hand-over lost after the destination verified the guest is resolved, e.g. 120s (default: [service] resolve-timeout).")
    var resolveTimeout: String?

    @Option(help: "Encrypt the tcp backend's frames: auto (on unless the peer is on this host), on or off (default: [transport] encrypt).")
    var encrypt: EncryptionPolicy?

    @Option(name: .customLong("handshake-timeout"), help: "How long a connecting peer may take to authenticate, e.g. 5s (default: [auth] handshake-timeout).")
    var handshakeTimeout: String?

    @Option(help: "IP type of service / traffic class of rdmig's packets, 0-255 (DSCP × 4 + ECN; on RoCE the class switches map to a priority). Default: the config's [transport] tos, else the system's.")
    var tos: Int?

    @Option(name: .customLong("tcp-buffer"), help: "tcp backend socket buffers: auto (sized from tcp_rmem and the measured round trip) or a size such as 64MiB, at least the link's bandwidth × round trip. Default: the config's [transport] tcp-buffer, else auto.",
            transform: { text in try TCPBufferSetting(parsing: text) })
    var tcpBuffer: TCPBufferSetting?

    @Option(help: "Page channels the source asks for, each its own connection and thread: auto (one per hot-path CPU, at most 8) or 1-16 (default: [transport] channels).")
    var channels: String?

    @Flag(help: "Print the final report as one JSON object on stdout.")
    var json = false

    @Flag(name: .shortAndLong, help: "Log every policy decision and protocol step to stderr.")
    var verbose = false

    func load() throws -> ServiceConfiguration {
        var configuration = try ServiceConfiguration.load(path: config ?? ConfigurationFile.defaultPath)
        if let peerTimeout {
            do {
                configuration.peerTimeout = try DurationParser.parse(peerTimeout)
            } catch {
                throw ValidationError("--peer-timeout: \(error)")
            }
        }
        if let connectTimeout {
            do {
                configuration.transport.options.connectTimeout = try DurationParser.parse(connectTimeout)
            } catch {
                throw ValidationError("--connect-timeout: \(error)")
            }
        }
        if let resolveTimeout {
            do {
                configuration.resolveTimeout = try DurationParser.parse(resolveTimeout)
            } catch {
                throw ValidationError("--resolve-timeout: \(error)")
            }
            guard configuration.resolveTimeout > .zero else { throw ValidationError("--resolve-timeout \(resolveTimeout): must be longer than 0, e.g. 120s") }
        }
        if let handshakeTimeout {
            let timeout: Duration
            do {
                timeout = try DurationParser.parse(handshakeTimeout)
            } catch {
                throw ValidationError("--handshake-timeout: \(error)")
            }
            guard timeout > .zero else { throw ValidationError("--handshake-timeout \(handshakeTimeout): must be longer than 0, e.g. 5s") }
            configuration.transport.options.handshakeTimeout = timeout
        }
        if let tos {
            guard let trafficClass = TransportOptions.trafficClass(tos) else {
                throw ValidationError("--tos \(tos): \(TransportOptions.trafficClassRange)")
            }
            configuration.transport.options.trafficClass = trafficClass
        }
        if let tcpBuffer { configuration.transport.options.socketBufferBytes = tcpBuffer.bytes }
        if let channels {
            do {
                configuration.transport.channels = try PageChannelCount.parse(channels)
            } catch {
                throw ValidationError("--channels \(channels): \(error)")
            }
        }
        if let keyFile { configuration.keyFile = keyFile }
        if let encrypt { configuration.encryption = encrypt }
        if let backend { configuration.transport.backend = backend }
        return configuration
    }

    /// The explicit key, or the per-user default created on first use (a paired launch on
    /// one machine then shares it without any setup).
    func key(_ configuration: ServiceConfiguration, log: Logger) throws -> PreSharedKey {
        if let path = configuration.keyFile { return try PreSharedKey.load(path: path) }
        let (key, created) = try PreSharedKey.loadOrCreateDefault()
        if created { log.notice("created a new pre-shared key at \(key.path): copy it to the other host (mode 600)") }
        return key
    }

    func logger(_ label: String) -> Logger {
        var logger = Logger(label: label) { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = verbose ? .info : .notice
        return logger
    }

    func emit(_ report: MigrationReport, role: String) throws {
        if json {
            print(try JSONText.encode(report))
        } else {
            FileHandle.standardError.write(Data("rdmig \(role):\n\(report.text)\n".utf8))
        }
    }
}

struct SourceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "source",
        abstract: "Migrate a guest to a listening `rdmig dest` (exits 0 only when the migration completed).")

    @Option(help: "Destination address, HOST:PORT (IPv6: [ADDR]:PORT).")
    var connect: TransportEndpoint

    @Option(name: .customLong("qemu-qmp"), help: "QEMU mode: migrate the QEMU behind this QMP socket (give it a second -qmp for rdmig) instead of a synthetic guest.")
    var qemuQMP: String?

    @Option(name: .customLong("max-bandwidth"), help: "QEMU mode: QEMU's max-bandwidth, e.g. 10GiB/s (default: measured over the transport before migrating).")
    var maxBandwidth: ByteRate?

    @Option(name: .customLong("guest-size"), help: "Synthetic guest memory, e.g. 1GiB.")
    var guestSize: String?

    @Option(name: .customLong("dirty-rate"), help: "Bytes per second the guest dirties, e.g. 256MiB/s (0 = idle).")
    var dirtyRate: String?

    @Option(name: .customLong("working-set"), help: "Memory the guest writes to, e.g. 256MiB (default: all).")
    var workingSet: String?

    @Option(help: "Write pattern: uniform, hot-cold or sequential.")
    var pattern: String?

    @Option(name: .customLong("vf"), help: "VF state provider, repeatable: ib-sw[:qps=N,...] or vfio:PATH.")
    var vf: [String] = []

    @Option(name: .customLong("downtime-limit"), help: "Switch over when the predicted downtime is at most this, e.g. 50ms.")
    var downtimeLimit: String?

    @Option(name: .customLong("max-iterations"), help: "Pre-copy passes before on-no-convergence applies.")
    var maxIterations: String?

    @Option(name: .customLong("on-no-convergence"), help: "throttle, force or fail.")
    var onNoConvergence: String?

    @Option(name: .customLong("set"), help: "Any [migration] setting as NAME=VALUE (repeatable), e.g. --set writers=2.")
    var settings: [String] = []

    @OptionGroup var service: ServiceOptions

    func run() throws {
        var configuration = try service.load()
        let flagSettings: [(String, String?)] = [
            ("guest-size", guestSize), ("dirty-rate", dirtyRate), ("working-set", workingSet), ("pattern", pattern),
            ("downtime-limit", downtimeLimit), ("max-iterations", maxIterations), ("on-no-convergence", onNoConvergence),
        ]
        var pairs = flagSettings.compactMap { name, value in value.map { (name, $0) } }
        for setting in settings {
            guard let equals = setting.firstIndex(of: "=") else {
                throw ValidationError("--set \(setting): write NAME=VALUE, e.g. --set writers=2")
            }
            pairs.append((String(setting[..<equals]), String(setting[setting.index(after: equals)...])))
        }
        for (name, value) in pairs {
            do {
                try configuration.migration.set(name, to: value)
            } catch {
                throw ValidationError("--\(name) \(value): \(error)")
            }
        }
        do {
            try configuration.migration.validate()
        } catch {
            throw ValidationError("\(error)")
        }
        if let qemuQMP {
            let guestFlags = [("--guest-size", guestSize), ("--dirty-rate", dirtyRate), ("--working-set", workingSet), ("--pattern", pattern)]
            if let (flag, _) = guestFlags.first(where: { $0.1 != nil }) {
                throw ValidationError("\(flag) describes the synthetic guest; with --qemu-qmp the guest is QEMU's")
            }
            try QEMUModeCommands.runSource(qmpPath: qemuQMP, connect: connect, devices: configuration.deviceSpecs + vf,
                                           maxBandwidth: maxBandwidth, configuration: configuration, service: service)
            return
        }
        if maxBandwidth != nil { throw ValidationError("--max-bandwidth is QEMU's parameter: use it with --qemu-qmp") }
        let log = service.logger("rdmig.source")
        let key = try service.key(configuration, log: log)
        // SIGINT/SIGTERM/SIGHUP: before COMMIT an orderly abort (the guest resumes here, the
        // report says so); after it the hand-over is finished first.
        InterruptSignal.install()
        let (selection, placement) = try configuration.placeHotPath(for: connect, log: log, announceBackend: true)

        var options = MigrationSource.Options(
            endpoint: connect, backend: selection.backend, transportOptions: configuration.transport.options,
            migration: configuration.migration, deviceSpecs: configuration.deviceSpecs + vf, key: key)
        options.peerTimeout = configuration.peerTimeout
        options.pollerCPUs = placement.cpus
        options.stopRequested = { InterruptSignal.stopReason }
        options.resolveTimeout = configuration.resolveTimeout
        options.encryption = configuration.encryption
        let channels = PageChannelCount.choose(configured: configuration.transport.channels, hotPathCPUs: placement.cpus.count)
        options.channels = channels.count
        log.info("page channels: \(channels.count) (\(channels.reason))")
        let logger = log
        options.log = { logger.info("\($0)") }
        let progress = ProgressReporter(fileDescriptor: 2)
        if !service.json || isatty(2) != 0 { options.progress = { progress.update($0) } }
        let report = MigrationSource(options: options).run()
        progress.finish()
        try service.emit(report, role: "source")
        if report.status != .completed {
            log.error("migration \(report.status == .cancelled ? "cancelled" : "failed"): \(report.errorDescription ?? "unknown"); the guest runs on \(report.guestLocation ?? "the source")")
            if report.status == .cancelled, let signal = InterruptSignal.pending { throw ExitCode(128 + signal) }
            // Exit 3: the hand-over could not be resolved; the guest is held paused, not lost.
            if report.guestLocation?.hasPrefix("unknown") == true { throw ExitCode(3) }
            throw ExitCode(1)
        }
    }
}

struct DestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dest",
        abstract: "Receive a guest from `rdmig source` (one migration per launch unless --keep-serving).")

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks one and prints it).")
    var listen: TransportEndpoint

    @Flag(name: .customLong("keep-serving"), help: "Serve one migration after another until stopped.")
    var keepServing = false

    @Option(name: .customLong("memory-backing"), help: "Incoming guest memory: anonymous, memfd, memfd:NAME or file:PATH.")
    var memoryBacking: String?

    @Option(name: .customLong("qemu-qmp"), help: "QEMU mode: feed the stream to the QEMU behind this QMP socket (started with -incoming defer -S).")
    var qemuQMP: String?

    @OptionGroup var service: ServiceOptions

    func run() throws {
        var configuration = try service.load()
        if let qemuQMP {
            if keepServing { throw ValidationError("--keep-serving: a QEMU started with -incoming takes one migration") }
            if memoryBacking != nil { throw ValidationError("--memory-backing: with --qemu-qmp QEMU owns the guest memory") }
            try QEMUModeCommands.runDestination(qmpPath: qemuQMP, listen: listen, configuration: configuration, service: service)
            return
        }
        let log = service.logger("rdmig.dest")
        let key = try service.key(configuration, log: log)
        // SIGINT/SIGTERM/SIGHUP: waiting, the service stops; in a migration before COMMIT the
        // incoming guest is discarded and the source told; after COMMIT the hand-over finishes.
        InterruptSignal.install()
        var options = MigrationDestination.Options(key: key)
        options.stopRequested = { InterruptSignal.stopReason }
        options.encryption = configuration.encryption
        options.peerTimeout = configuration.peerTimeout
        options.handshakeTimeout = configuration.transport.options.handshakeTimeout
        options.maximumGuestBytes = configuration.maximumGuestBytes
        if let memoryBacking {
            do {
                options.memoryBacking = try GuestMemoryBacking(parsing: memoryBacking)
            } catch {
                throw ValidationError("--memory-backing \(memoryBacking): \(error)")
            }
        }
        let logger = log
        options.log = { logger.info("\($0)") }
        let (selection, placement) = try configuration.placeHotPath(for: listen, log: log, announceBackend: false)
        options.pollerCPUs = placement.cpus
        options.memoryNode = placement.node
        options.guestPinning = configuration.memory.guestPinning
        let transportOptions = configuration.transport.options
        let listener: any TransportListener
        do {
            listener = try selection.backend.listen(on: listen, options: transportOptions)
        } catch {
            throw RdmigCommandError("cannot listen on \(listen): \(error)")
        }
        defer { listener.close() }
        // Scripts wait for this line (and read the port from it when they asked for port 0).
        FileHandle.standardError.write(Data("rdmig dest: listening on \(listener.localEndpoint) (\(selection.kind): \(selection.reason))\n".utf8))
        // Every connecting peer authenticates on a thread of its own within the handshake
        // timeout; junk, port scans and silent peers are logged and dropped, never fatal.
        var acceptorOptions = AuthenticatingListener.Options(key: key)
        acceptorOptions.handshakeTimeout = transportOptions.handshakeTimeout
        acceptorOptions.maximumPending = transportOptions.maximumPendingHandshakes
        acceptorOptions.encryption = configuration.encryption
        acceptorOptions.routerConfiguration = MigrationDestination.routerConfiguration(pollerCPUs: placement.cpus)
        acceptorOptions.log = { logger.notice("\($0)") }
        let acceptor: AuthenticatingListener
        do {
            acceptor = try AuthenticatingListener(listener: listener, options: acceptorOptions)
        } catch {
            throw RdmigCommandError("starting to accept migrations on \(listener.localEndpoint): \(error)")
        }
        defer { acceptor.stop() }
        let ledger = ResolutionLedger()
        options.ledger = ledger
        options.resolveTimeout = configuration.resolveTimeout
        options.nextSession = { timeout in acceptor.nextSession(timeout: timeout) }
        var failures = 0
        // Until this instant (single-shot mode, after a hand-over whose RESUMED may not have
        // reached the source) the service stays to answer the source's RESOLVE.
        var lingerUntil: ContinuousClock.Instant?
        var migrated = false
        while keepServing || !migrated || lingerUntil.map({ ContinuousClock.now < $0 }) == true {
            var next: MigrationSession?
            while next == nil {
                if let signal = InterruptSignal.pending {
                    log.notice("\(ChildProcess.signalName(signal)): no longer accepting migrations on \(listener.localEndpoint)")
                    throw ExitCode(failures > 0 ? 1 : (keepServing || migrated ? 0 : 128 + signal))
                }
                if let lingerUntil, ContinuousClock.now >= lingerUntil { break }
                next = acceptor.nextSession(timeout: .milliseconds(250))
                if next == nil, acceptor.isStopped {
                    throw RdmigCommandError("the listener on \(listener.localEndpoint) stopped accepting connections")
                }
            }
            guard let session = next else { break }
            let peer = session.connection.peerEndpoint
            if migrated && !keepServing {
                // One migration per launch: after it, only RESOLVE is answered.
                if case .resolve(let resolve)? = try? session.receive(.commit, during: "waiting for RESOLVE", timeout: .seconds(5)) {
                    ledger.answer(resolve, on: session, log: options.log)
                    lingerUntil = ContinuousClock.now
                } else {
                    session.abort("this destination serves one migration per launch and has served it (use --keep-serving)")
                    session.close()
                }
                continue
            }
            // Nothing keeps the destination after `serve`: a completed guest stays mapped and
            // pinned as long as its MigrationDestination lives, and the synthetic guest is not
            // needed once it is verified and reported, so a serving loop must not hold it.
            let destination = MigrationDestination(options: options)
            guard let report = destination.serve(session: session) else { continue }
            migrated = true
            try service.emit(report, role: "dest")
            if report.status != .completed {
                failures += 1
                log.error("migration from \(peer) \(report.status == .cancelled ? "cancelled" : "failed"): \(report.errorDescription ?? "unknown"); nothing runs here")
            }
            if destination.resumptionUnconfirmed && !keepServing {
                lingerUntil = ContinuousClock.now + configuration.resolveTimeout
                log.notice("staying up to \(formatFixed(configuration.resolveTimeout.seconds, decimals: 0)) s to tell the source, if it asks, that the guest runs here")
            }
            if let signal = InterruptSignal.pending {
                throw ExitCode(report.status == .completed && failures == 0 ? 0 : 128 + signal)
            }
            if report.guestLocation?.hasPrefix("unknown") == true && !keepServing { throw ExitCode(3) }
        }
        if failures > 0 { throw ExitCode(1) }
    }
}

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new pre-shared key (32 random bytes, hex, mode 600) for a source/destination pair.")

    @Argument(help: "Where to write it (default: $RDMIG_KEY_FILE or ~/.config/rdmig/psk).")
    var path: String?

    @Flag(help: "Replace an existing key.")
    var force = false

    func run() throws {
        let key = try PreSharedKey.generate(path: path ?? PreSharedKey.defaultPath, overwrite: force)
        print("wrote a new pre-shared key to \(key.path): copy it to the other host with the same mode (600)")
    }
}
