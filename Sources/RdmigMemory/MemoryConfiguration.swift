import RdmigSystem

/// The `[memory]` settings: where buffers and hot-path threads live and how the pool is built.
///
/// Keys (as in conf/rdmig.toml, all strings): `node` auto | N, `huge-pages` auto | off | 2M | 1G,
/// `pool-size` (e.g. 64MiB), `slab-size` (e.g. 64KiB), `thread-cpus` auto | CPU list.
public struct MemoryConfiguration: Sendable, Equatable, Codable {
    public var node: NodeSelection = .auto
    public var hugePages: HugePagePolicy = .auto
    /// Bytes of the pinned pool (a whole number of slabs). 64 MiB holds 5 ms of a 100 Gb/s link.
    public var poolSize: ByteCount = .mebibytes(64)
    /// Bytes of one slab; 64 KiB is the message size perftest uses for bandwidth.
    public var slabSize: ByteCount = .kibibytes(64)
    public var threadCPUs: CPUSelection = .auto
    /// How the destination pins incoming guest memory (`guest-pinning`).
    public var guestPinning: GuestPinning = .auto

    /// `prefault`: every page faulted in and locked before WINDOWS (what an RDMA registration
    /// needs anyway); `on-fault`: locked as the pages are first written (`mlock2(MLOCK_ONFAULT)`:
    /// the memlock limit is still checked for the whole guest at once), so pages that arrive as
    /// zero markers are never faulted in and setup does not wait for the rest; `auto`: on-fault
    /// on the tcp backend, prefault on verbs.
    public enum GuestPinning: String, Sendable, Equatable, Codable, CaseIterable {
        case auto, prefault
        case onFault = "on-fault"
    }

    public init() {}

    public init(
        node: NodeSelection = .auto, hugePages: HugePagePolicy = .auto, poolSize: ByteCount = .mebibytes(64),
        slabSize: ByteCount = .kibibytes(64), threadCPUs: CPUSelection = .auto
    ) {
        self.node = node
        self.hugePages = hugePages
        self.poolSize = poolSize
        self.slabSize = slabSize
        self.threadCPUs = threadCPUs
    }

    /// The keys this section accepts, in the order the conf file lists them.
    public static let keys = ["node", "huge-pages", "pool-size", "slab-size", "thread-cpus", "guest-pinning"]

    /// Reads a `[memory]` table whose values were given as strings (numbers written as text).
    /// Missing keys keep their defaults; unknown keys are refused so that typos are seen.
    public init(settings: [String: String]) throws(ParseError) {
        self.init()
        for key in settings.keys.sorted() {
            let value = settings[key]!
            switch key {
            case "node": node = try NodeSelection(parsing: value)
            case "huge-pages": hugePages = try HugePagePolicy(parsing: value)
            case "pool-size": poolSize = try Self.size(value, setting: "pool size")
            case "slab-size": slabSize = try Self.size(value, setting: "slab size")
            case "thread-cpus": threadCPUs = try CPUSelection(parsing: value)
            case "guest-pinning":
                guard let pinning = GuestPinning(rawValue: value) else {
                    throw .badValue(setting: "guest pinning", value: value, hint: "use auto, prefault or on-fault")
                }
                guestPinning = pinning
            default: throw .unknownKey(key, known: Self.keys)
            }
        }
        try validate()
    }

    private static func size(_ text: String, setting: String) throws(ParseError) -> ByteCount {
        do {
            return try ByteCount(parsing: text)
        } catch {
            throw .badValue(setting: setting, value: text, hint: error.description)
        }
    }

    /// Checks that the pool can be cut into slabs.
    public func validate() throws(ParseError) {
        let slab = slabSize.bytes
        guard slab >= 4096, slab % 4096 == 0 else {
            throw .badValue(setting: "slab size", value: slabSize.description,
                            hint: "use a multiple of 4 KiB, e.g. 64KiB")
        }
        guard poolSize.bytes >= slab, poolSize.bytes % slab == 0 else {
            throw .badValue(setting: "pool size", value: poolSize.description,
                            hint: "use a whole number (at least 1) of \(slabSize) slabs")
        }
        guard poolSize.bytes / slab <= UInt64(Int32.max) else {
            throw .badValue(setting: "pool size", value: poolSize.description,
                            hint: "at most \(Int32.max) slabs; use a larger slab size")
        }
    }

    public enum ParseError: Error, CustomStringConvertible, Equatable, Sendable {
        /// "huge pages 'big': use auto, off, 2M or 1G"
        case badValue(setting: String, value: String, hint: String)
        case unknownKey(String, known: [String])

        public var description: String {
            switch self {
            case .badValue(let setting, let value, let hint):
                return "\(setting) '\(value)': \(hint)"
            case .unknownKey(let key, let known):
                return "unknown key '\(key)' in [memory]: use \(known.joined(separator: ", "))"
            }
        }
    }

    enum CodingKeys: String, CodingKey {
        case node
        case hugePages = "huge-pages"
        case poolSize = "pool-size"
        case slabSize = "slab-size"
        case threadCPUs = "thread-cpus"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        var settings: [String: String] = [:]
        for key in container.allKeys {
            settings[key.rawValue] = try container.decode(String.self, forKey: key)
        }
        try self.init(settings: settings)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(node.description, forKey: .node)
        try container.encode(hugePages.rawValue, forKey: .hugePages)
        try container.encode(poolSize.description, forKey: .poolSize)
        try container.encode(slabSize.description, forKey: .slabSize)
        try container.encode(threadCPUs.description, forKey: .threadCPUs)
    }
}
