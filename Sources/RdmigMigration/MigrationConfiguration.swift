import RdmigSystem

/// Everything the migration layer needs to know from flags and `[migration]` in
/// conf/rdmig.toml. Settings have one kebab-case name each, the same as the CLI flag
/// (`--guest-size 1GiB`) and the TOML key (`guest-size = "1GiB"`), so both go through
/// `set(_:to:)` and are documented from one table (`MigrationConfiguration.settings`).
public struct MigrationConfiguration: Sendable, Equatable {
    public var guest = SyntheticGuestConfiguration()
    public var convergence = ConvergenceConfiguration()
    public var dirtyLog: DirtyLogKind = .synthetic
    /// Longest the guest may stay paused before COMMIT; nil = `defaultSwitchoverBudget`.
    public var switchoverBudget: Duration?
    /// A migration whose writes make no progress for this long fails (the guest stays here).
    public var progressTimeout: Duration = .seconds(30)
    /// A migration that has not switched over after this much per GiB of guest fails
    /// (KubeVirt's completionTimeoutPerGiB, 150 s there, scaled to links that move a GiB in
    /// about a second).
    public var completionTimeoutPerGiB: Duration = .seconds(60)

    /// The completion limit for a guest of `bytes`: per GiB, at least one GiB's worth.
    public func completionLimit(guestBytes bytes: UInt64) -> Duration {
        completionTimeoutPerGiB * max(1.0, Double(bytes) / Double(1 << 30))
    }

    public init() {}

    /// The switchover budget: `switchover-budget`, or 20 × the downtime limit but at least 1 s
    /// (room for a slow last pass, never the minute a peer timeout allows).
    public var effectiveSwitchoverBudget: Duration {
        switchoverBudget ?? max(.seconds(1), convergence.downtimeLimit * 20)
    }

    /// One setting: its name, its default as written in a config file, and what it does.
    public struct Setting: Sendable, Equatable {
        public let name: String
        public let defaultValue: String
        public let summary: String
    }

    public static let settings: [Setting] = [
        Setting(name: "guest-size", defaultValue: "1GiB", summary: "synthetic guest memory (one region)"),
        Setting(name: "page-size", defaultValue: "4KiB", summary: "tracking and transfer unit, a power of two"),
        Setting(name: "dirty-rate", defaultValue: "0",
                summary: "bytes per second the guest's writers dirty, all writers together (0 = idle guest)"),
        Setting(name: "working-set", defaultValue: "all",
                summary: "memory the writers touch, from address 0 ('all' = the whole guest); the rest stays zero"),
        Setting(name: "pattern", defaultValue: "uniform", summary: "uniform, hot-cold or sequential"),
        Setting(name: "hot-fraction", defaultValue: "0.2", summary: "hot-cold: share of the working set that is hot"),
        Setting(name: "hot-write-fraction", defaultValue: "0.8", summary: "hot-cold: share of writes that go to it"),
        Setting(name: "writers", defaultValue: "1", summary: "writer threads (each owns every n-th page)"),
        Setting(name: "seed", defaultValue: "0x7264_6d69_6700_0001",
                summary: "seeds page content and page choice; both hosts must agree"),
        Setting(name: "memory-backing", defaultValue: "anonymous", summary: "anonymous, memfd, memfd:NAME or file:PATH"),
        Setting(name: "huge-pages", defaultValue: "false", summary: "map guest memory with huge pages (MAP_HUGETLB)"),
        Setting(name: "dirty-log", defaultValue: "synthetic", summary: "synthetic or userfaultfd"),
        Setting(name: "downtime-limit", defaultValue: "50ms", summary: "switch over when the predicted downtime is at most this"),
        Setting(name: "switchover-budget", defaultValue: "auto",
                summary: "longest the guest stays paused before COMMIT; past it the guest resumes on the source ('auto' = 20 x downtime-limit, at least 1s)"),
        Setting(name: "progress-timeout", defaultValue: "30s",
                summary: "fail when no page write completes for this long (the guest keeps running on the source)"),
        Setting(name: "completion-timeout-per-gib", defaultValue: "60s",
                summary: "fail when pre-copy has not switched over after this much per GiB of guest"),
        Setting(name: "max-iterations", defaultValue: "30", summary: "pre-copy passes before on-no-convergence applies"),
        Setting(name: "on-no-convergence", defaultValue: "throttle", summary: "throttle, force or fail"),
        Setting(name: "throttle-initial", defaultValue: "20", summary: "first auto-converge throttle, percent"),
        Setting(name: "throttle-increment", defaultValue: "10", summary: "auto-converge step, percent"),
        Setting(name: "throttle-max", defaultValue: "99", summary: "largest throttle, percent"),
        Setting(name: "throttle-trigger-threshold", defaultValue: "50",
                summary: "a pass that dirties more than this percentage of what it sent counts as not converging"),
        Setting(name: "bandwidth-window", defaultValue: "100ms", summary: "shortest bandwidth measurement window"),
        Setting(name: "bandwidth-smoothing", defaultValue: "0.5", summary: "weight of the newest window in the average"),
        Setting(name: "initial-bandwidth", defaultValue: "measured",
                summary: "bandwidth to predict with before the first full window ('measured' = none)"),
    ]

    /// Sets one setting from its text form (a flag's argument or a TOML value as text).
    public mutating func set(_ name: String, to text: String) throws(MigrationConfigurationError) {
        let value = text.trimmingWhitespace()
        func invalid(_ expected: String) -> MigrationConfigurationError {
            .invalidValue(key: name, value: text, expected: expected)
        }
        func size() throws(MigrationConfigurationError) -> ByteCount {
            do throws(ByteCount.ParseError) { return try ByteCount(parsing: value) } catch {
                throw invalid("a size such as 4KiB, 256MiB or 1GiB (\(error))")
            }
        }
        func rate() throws(MigrationConfigurationError) -> ByteRate {
            do throws(ByteCount.ParseError) { return try ByteRate(parsing: value) } catch {
                throw invalid("a rate such as 256MiB/s or 1GiB/s (\(error))")
            }
        }
        func duration() throws(MigrationConfigurationError) -> Duration {
            do throws(DurationParser.ParseError) { return try DurationParser.parse(value) } catch {
                throw invalid("a duration such as 50ms or 2s")
            }
        }
        func integer() throws(MigrationConfigurationError) -> Int {
            guard let number = Int(value.replacingUnderscores()) else { throw invalid("a whole number") }
            return number
        }
        func fraction() throws(MigrationConfigurationError) -> Double {
            guard let number = Double(value), number.isFinite else { throw invalid("a number such as 0.2") }
            return number
        }
        func boolean() throws(MigrationConfigurationError) -> Bool {
            switch value.lowercased() {
            case "true", "yes", "on", "1": return true
            case "false", "no", "off", "0": return false
            default: throw invalid("true or false")
            }
        }
        func choice<Choice: RawRepresentable & CaseIterable>(_: Choice.Type) throws(MigrationConfigurationError) -> Choice
        where Choice.RawValue == String {
            guard let result = Choice(rawValue: value) else {
                throw invalid(Choice.allCases.map(\.rawValue).joined(separator: ", "))
            }
            return result
        }

        switch name {
        case "guest-size": guest.guestSize = try size()
        case "page-size": guest.pageSize = try size()
        case "dirty-rate": guest.dirtyRate = try rate()
        case "working-set": guest.workingSet = value == "all" ? nil : try size()
        case "pattern": guest.pattern = try choice(WritePattern.self)
        case "hot-fraction": guest.hotFraction = try fraction()
        case "hot-write-fraction": guest.hotWriteFraction = try fraction()
        case "writers": guest.writers = try integer()
        case "seed":
            let digits = value.replacingUnderscores().lowercased()
            let parsed = digits.hasPrefix("0x") ? UInt64(digits.dropFirst(2), radix: 16) : UInt64(digits)
            guard let seed = parsed else { throw invalid("a 64-bit number, decimal or 0x-hexadecimal") }
            guest.seed = seed
        case "memory-backing": guest.memoryBacking = try GuestMemoryBacking(parsing: value)
        case "huge-pages": guest.hugePages = try boolean()
        case "dirty-log": dirtyLog = try choice(DirtyLogKind.self)
        case "downtime-limit": convergence.downtimeLimit = try duration()
        case "switchover-budget":
            if value == "auto" {
                switchoverBudget = nil
            } else {
                let budget = try duration()
                guard budget > .zero else { throw invalid("a duration longer than 0, e.g. 2s, or auto") }
                switchoverBudget = budget
            }
        case "progress-timeout":
            let timeout = try duration()
            guard timeout > .zero else { throw invalid("a duration longer than 0, e.g. 30s") }
            progressTimeout = timeout
        case "completion-timeout-per-gib":
            let timeout = try duration()
            guard timeout > .zero else { throw invalid("a duration longer than 0, e.g. 60s") }
            completionTimeoutPerGiB = timeout
        case "max-iterations": convergence.maxIterations = try integer()
        case "on-no-convergence": convergence.onNoConvergence = try choice(NoConvergenceAction.self)
        case "throttle-initial": convergence.throttleInitial = try integer()
        case "throttle-increment": convergence.throttleIncrement = try integer()
        case "throttle-max": convergence.throttleMax = try integer()
        case "throttle-trigger-threshold": convergence.throttleTriggerThreshold = try integer()
        case "bandwidth-window": convergence.bandwidthWindow = try duration()
        case "bandwidth-smoothing": convergence.bandwidthSmoothing = try fraction()
        case "initial-bandwidth": convergence.initialBandwidth = value == "measured" ? nil : try rate()
        default:
            throw .unknownKey(name, known: MigrationConfiguration.settings.map(\.name))
        }
    }

    /// Sets several settings, in order; the first bad one throws.
    public mutating func set(_ values: [(String, String)]) throws(MigrationConfigurationError) {
        for (name, value) in values { try set(name, to: value) }
    }

    /// A configuration from settings over the defaults, validated.
    public init(settings values: [(String, String)]) throws(MigrationConfigurationError) {
        self.init()
        try set(values)
        try validate()
    }

    /// The current value of a setting in its text form (for logs and the effective-config dump).
    public func value(of name: String) -> String? {
        switch name {
        case "guest-size": return guest.guestSize.description
        case "page-size": return guest.pageSize.description
        case "dirty-rate": return guest.dirtyRate.description
        case "working-set": return guest.workingSet?.description ?? "all"
        case "pattern": return guest.pattern.rawValue
        case "hot-fraction": return "\(guest.hotFraction)"
        case "hot-write-fraction": return "\(guest.hotWriteFraction)"
        case "writers": return "\(guest.writers)"
        case "seed": return "0x" + String(guest.seed, radix: 16)
        case "memory-backing":
            switch guest.memoryBacking {
            case .anonymous: return "anonymous"
            case .memfd(let name): return "memfd:\(name)"
            case .file(let path, _, _): return "file:\(path)"
            }
        case "huge-pages": return "\(guest.hugePages)"
        case "dirty-log": return dirtyLog.rawValue
        case "downtime-limit": return DurationText.milliseconds(convergence.downtimeLimit)
        case "switchover-budget": return switchoverBudget.map { DurationText.milliseconds($0) } ?? "auto"
        case "progress-timeout": return DurationText.milliseconds(progressTimeout)
        case "completion-timeout-per-gib": return DurationText.milliseconds(completionTimeoutPerGiB)
        case "max-iterations": return "\(convergence.maxIterations)"
        case "on-no-convergence": return convergence.onNoConvergence.rawValue
        case "throttle-initial": return "\(convergence.throttleInitial)"
        case "throttle-increment": return "\(convergence.throttleIncrement)"
        case "throttle-max": return "\(convergence.throttleMax)"
        case "throttle-trigger-threshold": return "\(convergence.throttleTriggerThreshold)"
        case "bandwidth-window": return DurationText.milliseconds(convergence.bandwidthWindow)
        case "bandwidth-smoothing": return "\(convergence.bandwidthSmoothing)"
        case "initial-bandwidth": return convergence.initialBandwidth?.description ?? "measured"
        default: return nil
        }
    }

    public func validate() throws(MigrationConfigurationError) {
        try guest.validate()
        try convergence.validate()
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first.isWhitespace { slice = slice.dropFirst() }
        while let last = slice.last, last.isWhitespace { slice = slice.dropLast() }
        return String(slice)
    }

    func replacingUnderscores() -> String { String(filter { $0 != "_" }) }
}
