import Logging
import RdmigMemory
import RdmigMigration
import RdmigSystem
import RdmigTransport

/// Everything `conf/rdmig.toml` can set, with defaults; flags override it per invocation.
struct ServiceConfiguration {
    var transport = TransportSettings()
    var memory = MemoryConfiguration()
    var migration = MigrationConfiguration()
    /// [auth] key-file; nil = PreSharedKey.defaultPath (created on first use).
    var keyFile: String?
    /// [service] peer-timeout: how long either service waits for the other.
    var peerTimeout: Duration = .seconds(60)
    /// [service] resolve-timeout: how long a lost hand-over is resolved (see `ResolutionLedger`).
    var resolveTimeout: Duration = .seconds(120)
    /// [transport] encrypt: auto (on unless loopback), on or off.
    var encryption: EncryptionPolicy = .auto
    /// [service] vf: VF state providers the source migrates (`--vf` adds to them).
    var deviceSpecs: [String] = []
    /// [service] max-guest-size: the largest guest a destination accepts; nil ("auto") = what
    /// the host can pin when the guest's LAYOUT arrives.
    var maximumGuestBytes: UInt64?

    struct TransportSettings {
        /// nil = choose by address (verbs on an RDMA device, else tcp).
        var backend: TransportBackendKind?
        var options = TransportOptions()
        /// `queue-depth` was set in the file: then it holds for every backend.
        var queueDepthConfigured = false
        /// [transport] channels: page channels a source asks for; nil ("auto") = one per
        /// hot-path CPU, at most `PageChannelCount.automaticMaximum`.
        var channels: Int?

        /// Send queue depth on tcp when the file does not set one: the tcp backend's queue
        /// costs a few dozen bytes per entry, and a migration's scattered 4 KiB page WRITEs
        /// need this many in flight on a long link (measured across a 100 ms round trip: a
        /// 1 GiB guest dirtying 256 MiB/s did not finish in 90 s at 128, finished in 8.7 s at
        /// 16384; on loopback the same migration threw no throttle at 16384 where 128 needed
        /// 20 %). verbs keeps perftest's 128, within what every HCA's QP allows.
        static let tcpQueueDepth = 16384

        /// The options for `kind`, defaults adapted to it.
        mutating func adapt(to kind: TransportBackendKind) {
            if kind == .tcp && !queueDepthConfigured { options.sendQueueDepth = Self.tcpQueueDepth }
        }
    }

    static let sections = ["transport", "memory", "migration", "auth", "service"]

    /// Loads `path` (nil: defaults only) and rejects unknown sections and keys.
    static func load(path: String?) throws -> ServiceConfiguration {
        guard let path else { return ServiceConfiguration() }
        return try load(file: ConfigurationFile(path: path))
    }

    static func load(file: ConfigurationFile) throws -> ServiceConfiguration {
        var configuration = ServiceConfiguration()
        let transport = file.section("transport")
        if let backend = try transport.string("backend"), backend != "auto" {
            guard let kind = TransportBackendKind(rawValue: backend) else {
                throw ConfigurationFile.Error("\(file.path): [transport] backend = \"\(backend)\": use auto, verbs or tcp")
            }
            configuration.transport.backend = kind
        }
        if let depth = try transport.parsed("queue-depth", { $0 }), depth != "auto" {
            guard let value = Int(depth) else {
                throw ConfigurationFile.Error("\(file.path): [transport] queue-depth = \(depth): use \"auto\" (tcp \(TransportSettings.tcpQueueDepth), verbs 128) or a number 1 … 65536")
            }
            configuration.transport.options.sendQueueDepth = value
            configuration.transport.queueDepthConfigured = true
        }
        if let channels = try transport.parsed("channels", { $0 }) {
            do {
                configuration.transport.channels = try PageChannelCount.parse(channels)
            } catch {
                throw ConfigurationFile.Error("\(file.path): [transport] channels = \(channels): \(error)")
            }
        }
        if let depth = try transport.int("receive-depth") { configuration.transport.options.receiveQueueDepth = depth }
        if let interval = try transport.int("signal-interval") { configuration.transport.options.signalInterval = interval }
        if let mode = try transport.choice("completion", TransportOptions.CompletionMode.self) {
            configuration.transport.options.completionMode = mode
        }
        if let timeout = try transport.duration("connect-timeout") { configuration.transport.options.connectTimeout = timeout }
        if let policy = try transport.choice("encrypt", EncryptionPolicy.self) { configuration.encryption = policy }
        if let tos = try transport.int("tos") {
            guard let trafficClass = TransportOptions.trafficClass(tos) else {
                throw ConfigurationFile.Error("\(file.path): [transport] tos = \(tos) is out of range: \(TransportOptions.trafficClassRange)")
            }
            configuration.transport.options.trafficClass = trafficClass
        }
        if let text = try transport.string("tcp-buffer") {
            do {
                configuration.transport.options.socketBufferBytes = try TCPBufferSetting(parsing: text).bytes
            } catch {
                throw ConfigurationFile.Error("\(file.path): [transport] tcp-buffer = \"\(text)\": \(error)")
            }
        }
        for (key, value) in [("queue-depth", configuration.transport.options.sendQueueDepth),
                             ("receive-depth", configuration.transport.options.receiveQueueDepth),
                             ("signal-interval", configuration.transport.options.signalInterval)] where value < 1 || value > 65536 {
            throw ConfigurationFile.Error("\(file.path): [transport] \(key) = \(value) is out of range: use 1 … 65536")
        }

        let memory = file.section("memory")
        var memorySettings: [String: String] = [:]
        for key in MemoryConfiguration.keys {
            if let value = try memory.parsed(key, { $0 }) { memorySettings[key] = value }
        }
        do {
            configuration.memory = try MemoryConfiguration(settings: memorySettings)
        } catch {
            throw ConfigurationFile.Error("\(file.path): [memory] \(error)")
        }
        let migration = file.section("migration")
        for setting in MigrationConfiguration.settings {
            guard let text = try migration.parsed(setting.name, { $0 }) else { continue }
            do {
                try configuration.migration.set(setting.name, to: text)
            } catch {
                throw ConfigurationFile.Error("\(file.path): [migration] \(setting.name): \(error)")
            }
        }
        let auth = file.section("auth")
        if let keyFile = try auth.string("key-file"), !keyFile.isEmpty { configuration.keyFile = keyFile }
        if let timeout = try auth.duration("handshake-timeout") {
            guard timeout > .zero else {
                throw ConfigurationFile.Error("\(file.path): [auth] handshake-timeout must be longer than 0, e.g. \"5s\"")
            }
            configuration.transport.options.handshakeTimeout = timeout
        }
        if let pending = try auth.int("max-unauthenticated") {
            guard (1...4096).contains(pending) else {
                throw ConfigurationFile.Error("\(file.path): [auth] max-unauthenticated = \(pending) is out of range: use 1 … 4096")
            }
            configuration.transport.options.maximumPendingHandshakes = pending
        }
        let service = file.section("service")
        if let timeout = try service.duration("peer-timeout") { configuration.peerTimeout = timeout }
        if let timeout = try service.duration("resolve-timeout") {
            guard timeout > .zero else {
                throw ConfigurationFile.Error("\(file.path): [service] resolve-timeout must be longer than 0, e.g. \"120s\"")
            }
            configuration.resolveTimeout = timeout
        }
        if let specs = try service.strings("vf") { configuration.deviceSpecs = specs }
        if let size = try service.string("max-guest-size"), size != "auto" {
            do {
                let bytes = try ByteCount(parsing: size).bytes
                guard bytes > 0 else { throw ConfigurationFile.Error("0 bytes") }
                configuration.maximumGuestBytes = bytes
            } catch {
                throw ConfigurationFile.Error("\(file.path): [service] max-guest-size = \"\(size)\": \(error); use \"auto\" or a size such as \"64GiB\"")
            }
        }
        try file.rejectUnknownKeys(knownSections: sections)
        return configuration
    }
}

/// The backend for an address, honouring a forced choice, with the reason (for probe and logs).
enum BackendChoice {
    static func select(endpoint: TransportEndpoint, forced: TransportBackendKind?) -> TransportSelector.Selection {
        TransportSelector.select(for: endpoint, forced: forced, tcp: { TCPTransport() })
    }

    static func select(host: String, forced: TransportBackendKind?) throws -> TransportSelector.Selection {
        select(endpoint: TransportEndpoint(host: host, port: 0), forced: forced)
    }
}

extension ServiceConfiguration {
    /// The backend for `endpoint` and the hot-path CPUs near its device (logged), taken into
    /// the transport options: their threads on those CPUs, defaults adapted to the backend.
    /// With `announceBackend` the backend and why are logged too (a listening side says that in
    /// its "listening on" line instead).
    mutating func placeHotPath(for endpoint: TransportEndpoint, log: Logger, announceBackend: Bool) throws
        -> (selection: TransportSelector.Selection, placement: HotPathPlacement.Choice) {
        let selection = BackendChoice.select(endpoint: endpoint, forced: transport.backend)
        if announceBackend { log.info("transport \(selection.kind): \(selection.reason)") }
        let placement = try HotPathPlacement.choose(memory: memory, selection: selection)
        log.info("\(placement.description)")
        transport.options.threadCPUs = placement.cpus
        transport.adapt(to: selection.kind)
        return (selection, placement)
    }
}

/// Where the hot-path threads (transport I/O and completion polling) run: the CPUs of the
/// NUMA node of the device serving `endpoint` (or `[memory] thread-cpus`), as `rdmig probe`
/// reports. Returns the CPUs and a line for the log.
enum HotPathPlacement {
    typealias Choice = (cpus: [Int32], node: Int, description: String)

    static func choose(memory: MemoryConfiguration, selection: TransportSelector.Selection) throws -> Choice {
        let topology = MachineTopology.discover()
        let device = selection.device.flatMap { topology.locality(of: $0) != nil ? $0 : nil }
        do {
            let node = try topology.chooseNode(memory.node, device: device)
            let placement = try ThreadPlacement.choose(memory.threadCPUs, node: node, topology: topology)
            var text = "hot-path threads on CPUs \(CPUList.format(placement.cpus)) (\(placement.reason))"
            if let warning = placement.warning { text += "; \(warning)" }
            return (placement.cpus, node.node, text)
        } catch {
            throw RdmigCommandError("[memory] placement: \(error)")
        }
    }
}

