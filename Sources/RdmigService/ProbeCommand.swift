import ArgumentParser
import RdmigMemory
import RdmigMigration
import RdmigSystem
import RdmigTransport

/// `rdmig probe`: what this machine offers a migration — RDMA devices and ports, NUMA nodes,
/// where each NIC sits, memlock and huge pages, and which backend an address would get.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Report RDMA devices, NUMA topology, NIC locality, memlock, huge pages and backend selection.")

    @Option(name: .customLong("address"), help: "Address whose transport backend to report (HOST or HOST:PORT).")
    var addresses: [String] = ["127.0.0.1"]

    @Option(help: "Network interface or RDMA device whose NUMA node buffers and threads would use.")
    var device: String?

    @Option(help: "Config file with a [memory] section (default: $RDMIG_CONFIG).")
    var config: String?

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let settings = try ServiceConfiguration.load(path: config ?? ConfigurationFile.defaultPath)
        let report = try ProbeReport.collect(addresses: addresses, device: device, memory: settings.memory, encryption: settings.encryption,
                                             channels: settings.transport.channels)
        print(json ? try JSONText.encode(report) : report.text)
    }
}

struct ProbeReport: Encodable {
    struct Device: Encodable {
        struct Port: Encodable {
            var number: Int
            var state: String
            var linkLayer: String
            var gid: String
            var activeMTU: Int
            var lid: Int
            enum CodingKeys: String, CodingKey {
                case number, state, gid, lid
                case linkLayer = "link-layer"
                case activeMTU = "active-mtu"
            }
        }
        var name: String
        var nodeGUID: String
        var maxMRSize: UInt64
        var numaNode: Int?
        var netDevices: [String]
        var ports: [Port]
        var unavailable: String?
        enum CodingKeys: String, CodingKey {
            case name, ports, unavailable
            case nodeGUID = "node-guid"
            case maxMRSize = "max-mr-size"
            case numaNode = "numa-node"
            case netDevices = "net-devices"
        }
    }

    struct Selection: Encodable {
        var address: String
        var backend: String
        var reason: String
        var device: String?
        /// What `[transport] encrypt` gives with this address: "on (AES-256-GCM)", "off (...)".
        var encryption: String
        /// The page channels a source would ask for towards this address, and why.
        var channels: String
    }

    var rdmaDevices: [Device]
    var rdma: String
    var memory: MemoryProbe
    var transport: [Selection]

    enum CodingKeys: String, CodingKey {
        case rdma, memory, transport
        case rdmaDevices = "rdma-devices"
    }

    static func collect(addresses: [String], device: String?, memory: MemoryConfiguration,
                        encryption: EncryptionPolicy = .auto, channels: Int? = nil) throws -> ProbeReport {
        let devices: [RDMADevice]
        do {
            devices = try RDMADevice.list()
        } catch {
            throw RdmigCommandError("listing RDMA devices: \(error)")
        }
        let rdmaDevices = devices.map { device in
            Device(
                name: device.name, nodeGUID: device.nodeGUIDString, maxMRSize: device.maxMemoryRegionSize,
                numaNode: device.numaNode, netDevices: device.netDevices,
                ports: device.ports.map {
                    Device.Port(number: Int($0.number), state: $0.state.rawValue, linkLayer: $0.linkLayer.rawValue,
                                gid: $0.gid0, activeMTU: $0.activeMTU, lid: Int($0.lid))
                },
                unavailable: device.unavailableReason)
        }
        let memoryProbe = MemoryProbe.run(configuration: memory, device: device)
        var selections: [Selection] = []
        for address in addresses {
            let endpoint = (try? TransportEndpoint(parsing: address)) ?? TransportEndpoint(host: address, port: 0)
            let selection = BackendChoice.select(endpoint: endpoint, forced: nil)
            let wanted = encryption.wants(peer: endpoint)
            let encrypted: String
            switch (selection.kind, wanted) {
            case (.tcp, true): encrypted = "on (AES-256-GCM; encrypt = \(encryption))"
            case (.tcp, false): encrypted = encryption == .off ? "off (encrypt = off; on if the peer asks)" : "off (loopback; on if the peer asks)"
            case (.verbs, _): encrypted = encryption == .on
                ? "refused (encrypt = on, but verbs does not encrypt: the fabric is the boundary)"
                : "off (verbs: the fabric is the boundary — partitions, VLANs, IPsec/MACsec offload)"
            }
            let hotPathCPUs = (try? HotPathPlacement.choose(memory: memory, selection: selection))?.cpus.count ?? 1
            let choice = PageChannelCount.choose(configured: channels, hotPathCPUs: hotPathCPUs)
            selections.append(Selection(address: endpoint.host, backend: selection.kind.rawValue, reason: selection.reason,
                                        device: selection.device, encryption: encrypted,
                                        channels: "\(choice.count) (\(choice.reason))"))
        }
        return ProbeReport(
            rdmaDevices: rdmaDevices,
            rdma: devices.isEmpty ? "no RDMA device found" : "\(devices.count) RDMA device(s)",
            memory: memoryProbe, transport: selections)
    }

    var text: String {
        var lines: [String] = []
        lines.append("RDMA devices:")
        if rdmaDevices.isEmpty {
            lines.append("  no RDMA device found")
        }
        for device in rdmaDevices {
            if let unavailable = device.unavailable {
                lines.append("  \(device.name): \(unavailable)")
                continue
            }
            let node = device.numaNode.map { "NUMA node \($0)" } ?? "no NUMA node"
            let netdevs = device.netDevices.isEmpty ? "" : ", net devices \(device.netDevices.joined(separator: ", "))"
            lines.append("  \(device.name): GUID \(device.nodeGUID), max MR size \(ByteCount(device.maxMRSize).humanReadable), \(node)\(netdevs)")
            for port in device.ports {
                lines.append("    port \(port.number): \(port.state), link layer \(port.linkLayer), GID[0] \(port.gid), MTU \(port.activeMTU)"
                             + (port.linkLayer == "infiniband" ? ", LID \(port.lid)" : ""))
            }
        }
        let topology = memory.topology
        lines.append("NUMA: \(topology.summary) (from \(topology.source))")
        for node in topology.nodes {
            let free = node.memoryFree.map { ", \(ByteCount($0).humanReadable) free" } ?? ""
            lines.append("  node \(node.id): CPUs \(CPUList.format(node.cpus)), memory \(ByteCount(node.memoryTotal).humanReadable)\(free)")
        }
        lines.append("Device locality:")
        for locality in topology.interfaces + topology.rdmaDevices {
            lines.append("  \(locality.name) (\(locality.kind.rawValue)): \(locality.nodeDescription)")
        }
        lines.append("Memory:")
        lines.append("  memlock: \(topology.memlock)")
        for count in topology.hugePages {
            lines.append("  huge pages \(count.pageSize): \(count.total) total, \(count.free) free")
        }
        if let node = memory.node { lines.append("  buffers on node \(node.node) (\(node.reason))") }
        if let threads = memory.threads { lines.append("  polling/copy threads on CPUs \(CPUList.format(threads.cpus)) (\(threads.reason))") }
        if let pool = memory.pool {
            lines.append("  pool: \(ByteCount(pool.size)) in \(pool.slabCount) slabs of \(ByteCount(pool.slabSize)), \(pool.pageSize) pages"
                         + (pool.fallbackReason.map { " (\($0))" } ?? "")
                         + (pool.fitsMemlockLimit ? "" : "; does NOT fit the memlock limit"))
        }
        for problem in memory.problems { lines.append("  problem: \(problem)") }
        lines.append("Transport:")
        for selection in transport {
            lines.append("  \(selection.address): \(selection.backend) (\(selection.reason)); encryption \(selection.encryption); "
                + "page channels \(selection.channels)")
        }
        return lines.joined(separator: "\n")
    }
}
