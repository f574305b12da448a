import RdmigSystem

/// The memory part of `rdmig probe`: the machine, and what the `[memory]` configuration
/// would do on it — which node, which CPUs, which page size, whether the memlock limit lets
/// the pool be pinned — found without allocating or pinning anything.
public struct MemoryProbe: Codable, Sendable, Equatable {
    public var topology: MachineTopology
    public var configuration: MemoryConfiguration
    /// The interface or RDMA device the node was chosen for, if one was given.
    public var device: String?
    /// nil when the node cannot be chosen (see `problems`).
    public var node: NodeChoice?
    /// nil when no node or no CPUs could be chosen (see `problems`).
    public var threads: ThreadPlacement?
    public var pool: PoolPlan?
    /// What would make building the pool or starting the threads fail, in the errors' own words.
    public var problems: [String]

    /// What a pool built from the configuration would look like.
    public struct PoolPlan: Codable, Sendable, Equatable {
        public var size: UInt64
        public var slabSize: UInt64
        public var slabCount: Int
        /// The page size the pool would get, judged from the huge page counts.
        public var pageSize: PageSize
        /// Why not a larger page, as the pool would report it.
        public var fallbackReason: String?
        /// The memlock limit lets `size` more bytes be locked (or CAP_IPC_LOCK lifts it).
        public var fitsMemlockLimit: Bool

        enum CodingKeys: String, CodingKey {
            case size
            case slabSize = "slab-size"
            case slabCount = "slab-count"
            case pageSize = "page-size"
            case fallbackReason = "fallback-reason"
            case fitsMemlockLimit = "fits-memlock-limit"
        }
    }

    /// Looks at the machine (or the given topology) for `configuration` and `device`.
    public static func run(
        configuration: MemoryConfiguration, device: String? = nil,
        topology: MachineTopology = .discover(), sysfs: SysfsTree = SysfsTree()
    ) -> MemoryProbe {
        var probe = MemoryProbe(
            topology: topology, configuration: configuration, device: device, node: nil, threads: nil, pool: nil,
            problems: [])
        do {
            let node = try topology.chooseNode(configuration.node, device: device)
            probe.node = node
            probe.threads = try ThreadPlacement.choose(configuration.threadCPUs, node: node, topology: topology)
        } catch {
            probe.problems.append(error.description)
        }
        do {
            try configuration.validate()
        } catch {
            probe.problems.append(error.description)
            return probe
        }
        let size = configuration.poolSize.bytes
        var reasons: [String] = []
        var chosen = PageSize.base4KiB
        for candidate in configuration.hugePages.candidates(forLength: size) {
            if candidate.isHuge, let shortage = PinnedMemory.hugePageShortage(
                candidate, pages: Int(candidate.roundUp(size) / candidate.bytes), node: probe.node?.node, sysfs: sysfs)
            {
                reasons.append(shortage)
                continue
            }
            chosen = candidate
            break
        }
        let locked = chosen.roundUp(size)
        let fits = topology.memlock.allows(locked)
        if !fits {
            probe.problems.append(MemoryError.memlockLimit(
                requested: locked, limit: topology.memlock.soft, alreadyLocked: topology.memlock.locked, errno: 0
            ).description)
        }
        probe.pool = PoolPlan(
            size: size, slabSize: configuration.slabSize.bytes, slabCount: Int(size / configuration.slabSize.bytes),
            pageSize: chosen, fallbackReason: reasons.isEmpty ? nil : "\(chosen) pages: " + reasons.joined(separator: "; "),
            fitsMemlockLimit: fits)
        return probe
    }

    enum CodingKeys: String, CodingKey {
        case topology, configuration, device, node, threads, pool, problems
    }
}
