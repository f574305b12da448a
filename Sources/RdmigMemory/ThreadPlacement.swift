import RdmigSystem
import Synchronization

/// Which CPUs the hot-path threads (CQ pollers, copy threads) run on, and starting them there.
///
/// auto: the CPUs of the node the buffers are on (the NIC's node when it has one), narrowed
/// to the CPUs this process may use. A configured list must lie within those allowed CPUs.
/// Thread `i` is pinned to the single CPU `cpus[i % cpus.count]`, so that a busy-polling
/// thread keeps its cache and does not migrate (perftest leaves this to `taskset`; QEMU's
/// RDMA migration runs one unpinned thread).
public struct ThreadPlacement: Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Source: String, Codable, Sendable {
        /// `thread-cpus` was configured.
        case configured
        /// CPUs of the chosen node.
        case node
        /// No CPU of the node may be used by this process: any allowed CPU.
        case allowed
    }

    /// The node the CPUs were chosen for.
    public var node: Int?
    public var cpus: [Int32]
    public var source: Source
    public var reason: String
    /// A placement that works but is not what one would want (CPUs off the NIC's node).
    public var warning: String?

    public init(node: Int?, cpus: [Int32], source: Source, reason: String, warning: String? = nil) {
        self.node = node
        self.cpus = cpus
        self.source = source
        self.reason = reason
        self.warning = warning
    }

    /// Chooses CPUs for threads that serve buffers on `node` (see `MachineTopology.chooseNode`).
    public static func choose(
        _ selection: CPUSelection, node: NodeChoice, topology: MachineTopology
    ) throws(MemoryError) -> ThreadPlacement {
        let allowed = Set(topology.allowedCPUs)
        let nodeCPUs = topology.node(node.node)?.cpus ?? []
        switch selection {
        case .cpus(let requested):
            let refused = requested.filter { !allowed.contains($0) }
            guard refused.isEmpty else {
                throw .cpuNotAllowed(requested: refused, allowed: topology.allowedCPUs.sorted())
            }
            let offNode = requested.filter { !nodeCPUs.contains($0) }
            let warning = offNode.isEmpty ? nil
                : "CPUs \(CPUList.format(offNode)) are not on node \(node.node) (\(node.reason)), "
                    + "whose CPUs are \(CPUList.format(nodeCPUs)): expect cross-node traffic"
            return ThreadPlacement(
                node: node.node, cpus: requested, source: .configured,
                reason: "thread-cpus = \(CPUList.format(requested))", warning: warning)
        case .auto:
            let usable = nodeCPUs.filter { allowed.contains($0) }
            if !usable.isEmpty {
                return ThreadPlacement(
                    node: node.node, cpus: usable, source: .node,
                    reason: "CPUs of node \(node.node) (\(node.reason))")
            }
            let everything = topology.allowedCPUs.sorted()
            guard !everything.isEmpty else {
                throw .cpuNotAllowed(requested: nodeCPUs, allowed: [])
            }
            return ThreadPlacement(
                node: node.node, cpus: everything, source: .allowed,
                reason: "any allowed CPU",
                warning: "no CPU of node \(node.node) (\(CPUList.format(nodeCPUs))) is allowed for this process "
                    + "(cgroup cpuset or taskset?): threads run on \(CPUList.format(everything))")
        }
    }

    /// The CPU thread number `index` is pinned to.
    public func cpu(forThread index: Int) -> Int32 {
        cpus[index % cpus.count]
    }

    /// Starts thread number `index` pinned to `cpu(forThread: index)`, and returns once the
    /// kernel confirms the pinning (sched_getaffinity in the new thread). If it does not,
    /// `body` never runs and the error says what the kernel reported.
    public func startThread(
        index: Int, name: String, _ body: @escaping @Sendable () -> Void
    ) throws(MemoryError) -> SystemThread {
        let cpu = cpu(forThread: index)
        let doorbell: Doorbell
        do {
            doorbell = try Doorbell()
        } catch {
            throw .system(error)
        }
        let outcome = PinOutcome()
        let thread: SystemThread
        do {
            thread = try SystemThread(name: name) {
                var actual: [Int32] = []
                do {
                    try SystemThread.pinCurrentThread(to: [cpu])
                    actual = try SystemThread.currentAffinity()
                } catch {
                    actual = (try? SystemThread.currentAffinity()) ?? []
                }
                let pinned = actual == [cpu]
                outcome.result.withLock { $0 = actual }
                doorbell.forceRing()
                if pinned { body() }
            }
        } catch {
            throw .system(error)
        }
        var actual: [Int32]?
        while actual == nil {
            doorbell.sleep(timeoutMilliseconds: -1) { outcome.result.withLock { $0 != nil } }
            actual = outcome.result.withLock { $0 }
        }
        guard actual == [cpu] else {
            thread.join()
            throw .threadNotPinned(name: name, requested: [cpu], actual: actual ?? [])
        }
        return thread
    }

    public var description: String {
        var text = "threads on CPUs \(CPUList.format(cpus)): \(reason)"
        if let warning { text += "; warning: \(warning)" }
        return text
    }

    enum CodingKeys: String, CodingKey {
        case node, cpus, source, reason, warning
    }
}

/// What a starting thread saw after pinning itself, handed to the thread that started it.
private final class PinOutcome: Sendable {
    let result = Mutex<[Int32]?>(nil)
}
