import RdmigSystem

/// The final report of one migration, as `--json` prints it and as text for people.
///
/// Names and units follow QEMU's `query-migrate` (QMP, qapi/migration.json): kebab-case,
/// times in milliseconds, sizes in bytes. Times are fractional milliseconds here (QMP's are
/// whole), because rdmig's downtimes are tens of milliseconds and their ratio to the lower
/// bound is what sweeps compare.
public struct MigrationReport: Codable, Sendable, Equatable {
    /// QMP's MigrationStatus names.
    public enum Status: String, Codable, Sendable, CaseIterable {
        case setup, active, device, completed, failed, cancelled
    }

    /// VF state moved per VFIO migration phase.
    public struct DeviceStateBytes: Codable, Sendable, Equatable {
        public var preCopy: UInt64
        public var stopCopy: UInt64
        public init(preCopy: UInt64 = 0, stopCopy: UInt64 = 0) {
            self.preCopy = preCopy
            self.stopCopy = stopCopy
        }
        public var total: UInt64 { preCopy + stopCopy }

        enum CodingKeys: String, CodingKey {
            case preCopy = "pre-copy"
            case stopCopy = "stop-copy"
        }
    }

    /// One pre-copy pass, for the report's history.
    public struct Pass: Codable, Sendable, Equatable {
        public var iteration: Int
        public var bytes: UInt64
        public var time: Double
        public var dirtyBytes: UInt64
        public var throttle: Int
        public var decision: String
        public init(iteration: Int, bytes: UInt64, time: Double, dirtyBytes: UInt64, throttle: Int, decision: String) {
            self.iteration = iteration
            self.bytes = bytes
            self.time = time
            self.dirtyBytes = dirtyBytes
            self.throttle = throttle
            self.decision = decision
        }

        enum CodingKeys: String, CodingKey {
            case iteration, bytes
            case time = "time-ms"
            case dirtyBytes = "dirty-bytes"
            case throttle = "cpu-throttle-percentage"
            case decision
        }
    }

    public var status: Status
    /// Milliseconds from the start of setup to the end (COMMIT, or the failure).
    public var totalTime: Double
    /// Milliseconds the guest did not run anywhere: source pause to destination resume.
    public var downtime: Double
    /// Milliseconds before the first page was sent (connect, authenticate, layout, pinning).
    public var setupTime: Double
    /// Pre-copy passes (QMP dirty-sync-count).
    public var iterations: Int
    /// Bytes put on the wire: pages, zero-page markers, VF state, control messages.
    public var transferred: UInt64
    /// Pages sent as zero-page markers.
    public var zeroPages: UInt64
    /// Pages sent in full.
    public var normalPages: UInt64
    /// Bytes of full pages (normal-pages x page size).
    public var normalBytes: UInt64
    /// Guest dirty rate in bytes per second, from the last pass.
    public var dirtyRate: Double
    /// Measured transport bandwidth in bytes per second: the policy's estimate from the
    /// pre-copy passes (bytes on the wire over each pass's time).
    public var bandwidth: Double
    /// The stop-and-copy pass's own page rate in bytes per second: its bytes over the time
    /// from its first write to its last write's completion (0 when it wrote nothing). With
    /// the guest paused it usually beats pre-copy's `bandwidth`.
    public var switchoverBandwidth: Double
    public var vfStateBytes: DeviceStateBytes
    /// Bytes sent while the guest was paused (last dirty pages + VF stop-copy state).
    public var finalBytes: UInt64
    /// finalBytes over `linkBandwidth` (what the link moved in a burst at setup), in
    /// milliseconds: no switchover moving these bytes over this link can be shorter; what the
    /// downtime has beyond it is the switchover's fixed cost (pause, round trips,
    /// verification, resume) and whatever made the last pass slower than the link. Only
    /// without a link measurement, over the best rate the passes saw.
    public var downtimeLowerBound: Double
    /// The downtime the policy predicted when it chose to switch over (milliseconds).
    public var expectedDowntime: Double?
    /// The throttle in force at the end (QMP cpu-throttle-percentage).
    public var throttlePercent: Int
    /// True only when the destination's memory and VF state were checked equal to the source's.
    public var verified: Bool
    /// Why the migration failed (QMP error-desc).
    public var errorDescription: String?
    public var passes: [Pass]
    /// Where the guest runs when the service exits: "destination" after COMMIT, "source"
    /// when the migration failed and the source resumed it (checked, not assumed).
    public var guestLocation: String?
    /// Whether the transport encrypted the migration's frames (tcp: AES-256-GCM).
    public var encrypted: Bool = false
    /// Page channels the migration used (connections, each with its own thread).
    public var channels: Int = 1
    /// What the link moved at setup, in bytes per second: a short burst of large WRITEs over
    /// every page channel (0 when not measured). The downtime's lower bound is counted at it.
    public var linkBandwidth: Double = 0
    /// Bytes on the wire over pre-copy's wall time (first pass to switchover), bytes per second.
    public var precopyBandwidth: Double = 0

    public init(
        status: Status, totalTime: Double = 0, downtime: Double = 0, setupTime: Double = 0, iterations: Int = 0,
        transferred: UInt64 = 0, zeroPages: UInt64 = 0, normalPages: UInt64 = 0, normalBytes: UInt64 = 0,
        dirtyRate: Double = 0, bandwidth: Double = 0, switchoverBandwidth: Double = 0, vfStateBytes: DeviceStateBytes = DeviceStateBytes(),
        finalBytes: UInt64 = 0, downtimeLowerBound: Double? = nil, expectedDowntime: Double? = nil,
        throttlePercent: Int = 0, verified: Bool = false, errorDescription: String? = nil, passes: [Pass] = []
    ) {
        self.status = status
        self.totalTime = totalTime
        self.downtime = downtime
        self.setupTime = setupTime
        self.iterations = iterations
        self.transferred = transferred
        self.zeroPages = zeroPages
        self.normalPages = normalPages
        self.normalBytes = normalBytes
        self.dirtyRate = dirtyRate
        self.bandwidth = bandwidth
        self.switchoverBandwidth = switchoverBandwidth
        self.vfStateBytes = vfStateBytes
        self.finalBytes = finalBytes
        self.downtimeLowerBound = downtimeLowerBound
            ?? MigrationReport.lowerBound(finalBytes: finalBytes, bandwidth: max(bandwidth, switchoverBandwidth))
        self.expectedDowntime = expectedDowntime
        self.throttlePercent = throttlePercent
        self.verified = verified
        self.errorDescription = errorDescription
        self.passes = passes
    }

    /// finalBytes over the bandwidth, in milliseconds (0 when either is unknown).
    public static func lowerBound(finalBytes: UInt64, bandwidth: Double) -> Double {
        bandwidth > 0 ? Double(finalBytes) / bandwidth * 1000 : 0
    }

    /// downtime / downtime-lower-bound, the sweep's figure of merit (nil without a bound).
    public var downtimeRatio: Double? {
        downtimeLowerBound > 0 ? downtime / downtimeLowerBound : nil
    }

    enum CodingKeys: String, CodingKey {
        case status
        case totalTime = "total-time"
        case downtime
        case setupTime = "setup-time"
        case iterations
        case transferred
        // QEMU 9.1 renamed `duplicate` to `zero-pages` and still emits both; so does rdmig,
        // for tools written against either.
        case duplicate
        case zeroPages = "zero-pages"
        case normalPages = "normal-pages"
        case normalBytes = "normal-bytes"
        case dirtyRate = "dirty-rate"
        case bandwidth
        case switchoverBandwidth = "switchover-bandwidth"
        case vfStateBytes = "vf-state-bytes"
        case finalBytes = "final-bytes"
        case downtimeLowerBound = "downtime-lower-bound"
        case expectedDowntime = "expected-downtime"
        case throttlePercent = "cpu-throttle-percentage"
        case verified
        case errorDescription = "error-desc"
        case passes
        case guestLocation = "guest-location"
        case encrypted
        case channels
        case linkBandwidth = "link-bandwidth"
        case precopyBandwidth = "precopy-bandwidth"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        status = try container.decode(Status.self, forKey: .status)
        totalTime = try container.decode(Double.self, forKey: .totalTime)
        downtime = try container.decode(Double.self, forKey: .downtime)
        setupTime = try container.decode(Double.self, forKey: .setupTime)
        iterations = try container.decode(Int.self, forKey: .iterations)
        transferred = try container.decode(UInt64.self, forKey: .transferred)
        zeroPages = try container.decodeIfPresent(UInt64.self, forKey: .zeroPages)
            ?? container.decode(UInt64.self, forKey: .duplicate)
        normalPages = try container.decode(UInt64.self, forKey: .normalPages)
        normalBytes = try container.decodeIfPresent(UInt64.self, forKey: .normalBytes) ?? 0
        dirtyRate = try container.decode(Double.self, forKey: .dirtyRate)
        bandwidth = try container.decode(Double.self, forKey: .bandwidth)
        switchoverBandwidth = try container.decodeIfPresent(Double.self, forKey: .switchoverBandwidth) ?? 0
        vfStateBytes = try container.decode(DeviceStateBytes.self, forKey: .vfStateBytes)
        finalBytes = try container.decodeIfPresent(UInt64.self, forKey: .finalBytes) ?? 0
        downtimeLowerBound = try container.decode(Double.self, forKey: .downtimeLowerBound)
        expectedDowntime = try container.decodeIfPresent(Double.self, forKey: .expectedDowntime)
        throttlePercent = try container.decodeIfPresent(Int.self, forKey: .throttlePercent) ?? 0
        verified = try container.decode(Bool.self, forKey: .verified)
        errorDescription = try container.decodeIfPresent(String.self, forKey: .errorDescription)
        passes = try container.decodeIfPresent([Pass].self, forKey: .passes) ?? []
        guestLocation = try container.decodeIfPresent(String.self, forKey: .guestLocation)
        encrypted = try container.decodeIfPresent(Bool.self, forKey: .encrypted) ?? false
        channels = try container.decodeIfPresent(Int.self, forKey: .channels) ?? 1
        linkBandwidth = try container.decodeIfPresent(Double.self, forKey: .linkBandwidth) ?? 0
        precopyBandwidth = try container.decodeIfPresent(Double.self, forKey: .precopyBandwidth) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(status, forKey: .status)
        try container.encode(MigrationReport.rounded(totalTime), forKey: .totalTime)
        try container.encode(MigrationReport.rounded(downtime), forKey: .downtime)
        try container.encode(MigrationReport.rounded(setupTime), forKey: .setupTime)
        try container.encode(iterations, forKey: .iterations)
        try container.encode(transferred, forKey: .transferred)
        try container.encode(zeroPages, forKey: .duplicate)
        try container.encode(zeroPages, forKey: .zeroPages)
        try container.encode(normalPages, forKey: .normalPages)
        try container.encode(normalBytes, forKey: .normalBytes)
        try container.encode(dirtyRate.rounded(), forKey: .dirtyRate)
        try container.encode(bandwidth.rounded(), forKey: .bandwidth)
        try container.encode(switchoverBandwidth.rounded(), forKey: .switchoverBandwidth)
        try container.encode(vfStateBytes, forKey: .vfStateBytes)
        try container.encode(finalBytes, forKey: .finalBytes)
        try container.encode(MigrationReport.rounded(downtimeLowerBound), forKey: .downtimeLowerBound)
        try container.encodeIfPresent(expectedDowntime.map(MigrationReport.rounded), forKey: .expectedDowntime)
        try container.encode(throttlePercent, forKey: .throttlePercent)
        try container.encode(verified, forKey: .verified)
        try container.encodeIfPresent(errorDescription, forKey: .errorDescription)
        if !passes.isEmpty { try container.encode(passes, forKey: .passes) }
        try container.encodeIfPresent(guestLocation, forKey: .guestLocation)
        try container.encode(encrypted, forKey: .encrypted)
        try container.encode(channels, forKey: .channels)
        try container.encode(linkBandwidth.rounded(), forKey: .linkBandwidth)
        try container.encode(precopyBandwidth.rounded(), forKey: .precopyBandwidth)
    }

    /// Microsecond resolution is all a millisecond figure needs; it keeps the JSON short.
    static func rounded(_ milliseconds: Double) -> Double {
        (milliseconds * 1000).rounded() / 1000
    }

    /// The report for people, one fact per line.
    public var text: String {
        var lines: [String] = []
        func line(_ name: String, _ value: String) {
            let padded = name + String(repeating: " ", count: max(1, 22 - name.count))
            lines.append(padded + value)
        }
        func ms(_ value: Double) -> String { formatFixed(value, decimals: 1) + " ms" }
        line("status", status.rawValue)
        if let errorDescription { line("error", errorDescription) }
        if let guestLocation { line("guest runs on", guestLocation) }
        line("total time", ms(totalTime))
        line("setup time", ms(setupTime))
        var downtimeText = ms(downtime)
        if let ratio = downtimeRatio { downtimeText += " (" + formatFixed(ratio, decimals: 2) + " x lower bound)" }
        line("downtime", downtimeText)
        line("downtime lower bound", ms(downtimeLowerBound) + " (\(ByteCountText.human(finalBytes)) final)")
        if let expectedDowntime { line("expected downtime", ms(expectedDowntime)) }
        line("iterations", "\(iterations)")
        line("transferred", ByteCountText.human(transferred))
        line("pages", "\(normalPages) normal (\(ByteCountText.human(normalBytes))), \(zeroPages) zero")
        line("bandwidth", (bandwidth > 0 ? DurationText.rate(bandwidth) : "not measured (pre-copy moved too little)")
            + (switchoverBandwidth > 0 ? " (stop-and-copy pass: \(DurationText.rate(switchoverBandwidth)))" : ""))
        if precopyBandwidth > 0 { line("pre-copy bandwidth", DurationText.rate(precopyBandwidth) + " (bytes on the wire over pre-copy's wall time)") }
        // The link is measured by the source; a destination's report says only what it saw.
        let channelText = "\(channels) page channel\(channels == 1 ? "" : "s")"
        if linkBandwidth > 0 {
            line("link", DurationText.rate(linkBandwidth) + " over " + channelText)
        } else {
            line("page channels", "\(channels)")
        }
        line("dirty rate", DurationText.rate(dirtyRate))
        if throttlePercent > 0 { line("throttle", "\(throttlePercent)%") }
        line("vf state", "\(ByteCountText.human(vfStateBytes.preCopy)) pre-copy, "
            + "\(ByteCountText.human(vfStateBytes.stopCopy)) stop-copy")
        line("verified", verified ? "yes" : "no")
        line("encrypted", encrypted ? "yes (AES-256-GCM)" : "no")
        return lines.joined(separator: "\n") + "\n"
    }
}
