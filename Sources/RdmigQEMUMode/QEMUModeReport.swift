import RdmigQEMU
import RdmigSystem

/// One QEMU-mode migration as `rdmig source|dest --qemu-qmp` reports it: QEMU's own
/// `query-migrate` figures next to rdmig's (probe, relay, stalls), and the downtime from the
/// source's STOP event to the destination's RESUME event. `--json` prints it as one object.
public struct QEMUModeReport: Encodable, Sendable {
    public enum Status: String, Encodable, Sendable {
        case completed, failed
    }

    /// QEMU's `query-migrate` after the migration, on this side.
    public struct QEMUFigures: Encodable, Sendable {
        public var status: String?
        public var totalTimeMilliseconds: Int64?
        public var downtimeMilliseconds: Int64?
        public var expectedDowntimeMilliseconds: Int64?
        public var setupTimeMilliseconds: Int64?
        public var transferredBytes: UInt64?
        public var totalBytes: UInt64?
        public var normalPages: UInt64?
        public var duplicatePages: UInt64?
        public var megabitsPerSecond: Double?
        public var dirtySyncCount: UInt64?
        /// MIGRATION_PASS events seen (source).
        public var passes: Int?

        init(_ info: QEMUMigrationInfo, passes: Int? = nil) {
            status = info.status?.rawValue
            totalTimeMilliseconds = info.totalTimeMilliseconds
            downtimeMilliseconds = info.downtimeMilliseconds
            expectedDowntimeMilliseconds = info.expectedDowntimeMilliseconds
            setupTimeMilliseconds = info.setupTimeMilliseconds
            transferredBytes = info.ram?.transferredBytes
            totalBytes = info.ram?.totalBytes
            normalPages = info.ram?.normalPages
            duplicatePages = info.ram?.duplicatePages
            megabitsPerSecond = info.ram?.megabitsPerSecond
            dirtySyncCount = info.ram?.dirtySyncCount
            self.passes = passes
        }
    }

    /// A relay's or the probe's figures.
    public struct Transfer: Encodable, Sendable {
        public var bytes: UInt64
        public var milliseconds: Double
        public var bytesPerSecond: UInt64
        /// Time spent waiting for the far side's credit (source relay only).
        public var stallMilliseconds: Double?
        /// Byte-stream slots the stream travelled in (source relay only).
        public var chunks: UInt64?
        /// CPU time this service used while relaying (all its threads): what the relay cost
        /// the host.
        public var cpuMilliseconds: Double?

        init(bytes: UInt64, elapsed: Duration, stall: Duration? = nil, chunks: UInt64? = nil, cpu: Duration? = nil) {
            self.bytes = bytes
            milliseconds = elapsed.milliseconds
            let seconds = elapsed.seconds
            bytesPerSecond = seconds > 0 ? UInt64(Double(bytes) / seconds) : 0
            stallMilliseconds = stall?.milliseconds
            self.chunks = chunks
            cpuMilliseconds = cpu?.milliseconds
        }

        init(_ statistics: QEMURelayStatistics, withStall: Bool) {
            self.init(bytes: statistics.bytes, elapsed: statistics.elapsed, stall: withStall ? statistics.stallTime : nil,
                      chunks: statistics.chunks > 0 ? statistics.chunks : nil, cpu: statistics.cpuTime)
        }

        var text: String {
            var text = "\(ByteCount(bytes).humanReadable) in \(formatFixed(milliseconds, decimals: 0)) ms "
                + "(\(ByteCount.humanReadable(Double(bytesPerSecond)))/s)"
            if let stall = stallMilliseconds { text += ", stalled \(formatFixed(stall, decimals: 0)) ms" }
            if let chunks, chunks > 0 { text += ", \(chunks) slots of \(ByteCount(bytes / chunks).humanReadable) on average" }
            if let cpu = cpuMilliseconds { text += ", CPU \(formatFixed(cpu, decimals: 0)) ms" }
            return text
        }
    }

    public var role: String
    public var status: Status = .failed
    public var error: String?
    /// Where the guest runs now, in words.
    public var guestLocation: String?
    public var qemuVersion: String?
    /// The transport measurement QEMU's max-bandwidth came from (source; nil when set by hand).
    public var probe: Transfer?
    public var maxBandwidthBytesPerSecond: UInt64?
    public var downtimeLimitMilliseconds: Double?
    public var qemu: QEMUFigures?
    /// This side's relay.
    public var relay: Transfer?
    /// The other side's relay, as it reported it (source: from QEMU_OUTCOME).
    public var peerRelay: Transfer?
    /// Source STOP event to destination RESUME event (both QEMU stamps), source only.
    public var downtimeMilliseconds: Double?
    public var preSwitchoverHookMilliseconds: Double?
    public var beforeResumeHookMilliseconds: Double?
    /// VF state moved out of band (stop-copy bytes), and whether the destination verified it.
    public var vfStateBytes: UInt64?
    public var vfStateVerified: Bool?
    /// From the start of the command's work to its end.
    public var wallTimeMilliseconds: Double = 0
    public var notes: [String] = []

    public init(role: String) {
        self.role = role
    }

    /// For people (stderr without --json).
    public var text: String {
        var lines = ["status: \(status.rawValue)"]
        if let error { lines.append("error: \(error)") }
        if let guestLocation { lines.append("guest: \(guestLocation)") }
        if let qemuVersion { lines.append("QEMU: \(qemuVersion)") }
        if let probe { lines.append("transport probe: \(probe.text)") }
        if let rate = maxBandwidthBytesPerSecond {
            lines.append("QEMU max-bandwidth: \(ByteCount.humanReadable(Double(rate)))/s"
                + (downtimeLimitMilliseconds.map { ", downtime-limit \(formatFixed($0, decimals: 0)) ms" } ?? ""))
        }
        if let qemu {
            var parts: [String] = []
            if let value = qemu.totalTimeMilliseconds { parts.append("total-time \(value) ms") }
            if let value = qemu.setupTimeMilliseconds { parts.append("setup-time \(value) ms") }
            if let value = qemu.downtimeMilliseconds { parts.append("downtime \(value) ms") }
            if let value = qemu.transferredBytes { parts.append("ram transferred \(ByteCount(value).humanReadable)") }
            if let value = qemu.megabitsPerSecond { parts.append("\(formatFixed(value, decimals: 0)) Mbit/s") }
            if let value = qemu.dirtySyncCount { parts.append("dirty syncs \(value)") }
            lines.append("QEMU query-migrate: \(qemu.status ?? "?"); " + parts.joined(separator: ", "))
        }
        if let relay { lines.append("rdmig relay: \(relay.text)") }
        if let peerRelay { lines.append("peer relay: \(peerRelay.text)") }
        if let downtime = downtimeMilliseconds {
            lines.append("downtime (source STOP to destination RESUME): \(formatFixed(downtime, decimals: 1)) ms")
        }
        if let hook = preSwitchoverHookMilliseconds { lines.append("pre-switchover VF state: \(formatFixed(hook, decimals: 1)) ms") }
        if let hook = beforeResumeHookMilliseconds { lines.append("before-resume VF load: \(formatFixed(hook, decimals: 1)) ms") }
        if let bytes = vfStateBytes {
            lines.append("VF state: \(ByteCount(bytes).humanReadable)" + (vfStateVerified == true ? ", verified by the destination" : ""))
        }
        lines.append("wall time: \(formatFixed(wallTimeMilliseconds, decimals: 0)) ms")
        lines += notes.map { "note: \($0)" }
        return lines.joined(separator: "\n")
    }
}
