/// What an `ib-sw` provider models, parsed from its spec:
/// `ib-sw:qps=1000[,mrs=N][,cqs=N][,srqs=N][,pds=N][,ports=N][,gids=N][,seed=N][,ack=0|1]`.
///
/// Counts not given are derived from `qps` the way MPI-style applications use a VF: one MR
/// per QP, a CQ shared by two QPs, an SRQ per 64 QPs and a PD per 16 QPs. Counts accept a
/// `k` (x1000) or `m` (x1000000) suffix: `qps=100k`.
public struct IBVFConfiguration: Equatable, Sendable, CustomStringConvertible {
    public var shape: IBVFShape
    /// Seeds the initial population and the mutator: the same seed gives the same VF.
    public var seed: UInt64
    /// Whether the destination must acknowledge the initial state before switchover.
    public var requiresSwitchoverAck: Bool

    /// The derived shape for `queuePairs` QPs.
    public init(queuePairs: Int = 1000, seed: UInt64 = 1, requiresSwitchoverAck: Bool = true) {
        precondition(IBVFConfiguration.limits["qps"]!.contains(queuePairs), "ib-sw needs 1 to 4000000 QPs")
        shape = IBVFShape(
            ports: 1, gidsPerPort: 2, protectionDomains: max(1, queuePairs / 16), memoryRegions: max(1, queuePairs),
            completionQueues: max(1, queuePairs / 2), sharedReceiveQueues: max(1, queuePairs / 64),
            queuePairs: queuePairs)
        self.seed = seed
        self.requiresSwitchoverAck = requiresSwitchoverAck
    }

    public init(shape: IBVFShape, seed: UInt64 = 1, requiresSwitchoverAck: Bool = true) {
        precondition(IBVFConfiguration.fits(shape), "ib-sw shape \(shape) is outside the spec's limits")
        self.shape = shape
        self.seed = seed
        self.requiresSwitchoverAck = requiresSwitchoverAck
    }

    static let keys = ["qps", "mrs", "cqs", "srqs", "pds", "ports", "gids", "seed", "ack"]

    /// Limits keep every handle inside its field: QPNs and MPT indices are 24-bit on mlx4,
    /// an mlx4 VF has at most 2 ports, a GID table at most 128 entries.
    static let limits: [String: ClosedRange<Int>] = [
        "qps": 1...4_000_000, "mrs": 1...4_000_000, "cqs": 1...4_000_000, "srqs": 0...4_000_000,
        "pds": 1...4_000_000, "ports": 1...2, "gids": 1...128,
    ]

    /// Parses a full spec (`ib-sw`, `ib-sw:qps=1000,mrs=4000`).
    public init(parsing spec: String) throws(DeviceStateError) {
        let kindEnd = spec.firstIndex(of: ":") ?? spec.endIndex
        guard spec[..<kindEnd] == "ib-sw" else {
            throw .invalidSpec(spec: spec, reason: "an ib-sw spec starts with 'ib-sw', e.g. ib-sw:qps=1000")
        }
        let arguments = kindEnd == spec.endIndex ? "" : String(spec[spec.index(after: kindEnd)...])
        var values: [String: String] = [:]
        for item in arguments.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0]).trimmingCharacters(in: " ").lowercased()
            guard parts.count == 2 else {
                throw .invalidSpec(spec: spec, reason: "'\(item)' is not key=value (e.g. qps=1000)")
            }
            guard IBVFConfiguration.keys.contains(key) else {
                throw .invalidSpec(
                    spec: spec,
                    reason: "unknown key '\(key)': known keys are \(IBVFConfiguration.keys.joined(separator: ", "))")
            }
            guard values[key] == nil else { throw .invalidSpec(spec: spec, reason: "'\(key)' is given twice") }
            values[key] = String(parts[1]).trimmingCharacters(in: " ")
        }

        func count(_ key: String) throws(DeviceStateError) -> Int? {
            guard let text = values[key] else { return nil }
            let range = IBVFConfiguration.limits[key]!
            guard let value = IBVFConfiguration.parseCount(text), range.contains(value) else {
                throw .invalidSpec(
                    spec: spec,
                    reason: "\(key) must be a whole number from \(range.lowerBound) to \(range.upperBound) "
                        + "(a k or m suffix multiplies by 1000 or 1000000), got '\(text)'")
            }
            return value
        }

        var configuration = IBVFConfiguration(queuePairs: try count("qps") ?? 1000)
        if let value = try count("mrs") { configuration.shape.memoryRegions = value }
        if let value = try count("cqs") { configuration.shape.completionQueues = value }
        if let value = try count("srqs") { configuration.shape.sharedReceiveQueues = value }
        if let value = try count("pds") { configuration.shape.protectionDomains = value }
        if let value = try count("ports") { configuration.shape.ports = value }
        if let value = try count("gids") { configuration.shape.gidsPerPort = value }
        if let text = values["seed"] {
            guard let seed = UInt64(text) else {
                throw .invalidSpec(spec: spec, reason: "seed must be a whole number from 0 to 2^64-1, got '\(text)'")
            }
            configuration.seed = seed
        }
        if let text = values["ack"] {
            switch text.lowercased() {
            case "1", "true", "yes", "on": configuration.requiresSwitchoverAck = true
            case "0", "false", "no", "off": configuration.requiresSwitchoverAck = false
            default: throw .invalidSpec(spec: spec, reason: "ack must be 0 or 1, got '\(text)'")
            }
        }
        self = configuration
    }

    static func fits(_ shape: IBVFShape) -> Bool {
        let counts = [
            ("qps", shape.queuePairs), ("mrs", shape.memoryRegions), ("cqs", shape.completionQueues),
            ("srqs", shape.sharedReceiveQueues), ("pds", shape.protectionDomains), ("ports", shape.ports),
            ("gids", shape.gidsPerPort),
        ]
        return counts.allSatisfy { limits[$0.0]!.contains($0.1) }
    }

    static func parseCount(_ text: String) -> Int? {
        var digits = Substring(text)
        var multiplier = 1
        if let last = digits.last?.lowercased() {
            if last == "k" { multiplier = 1000 } else if last == "m" { multiplier = 1_000_000 }
            if multiplier != 1 { digits = digits.dropLast() }
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let value = Int(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    /// The spec that reproduces this configuration exactly.
    public var spec: String {
        "ib-sw:qps=\(shape.queuePairs),mrs=\(shape.memoryRegions),cqs=\(shape.completionQueues),"
            + "srqs=\(shape.sharedReceiveQueues),pds=\(shape.protectionDomains),ports=\(shape.ports),"
            + "gids=\(shape.gidsPerPort),seed=\(seed),ack=\(requiresSwitchoverAck ? 1 : 0)"
    }

    public var description: String { spec }
}

extension String {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        var text = Substring(self)
        while text.first == character { text = text.dropFirst() }
        while text.last == character { text = text.dropLast() }
        return String(text)
    }
}
