import RdmigSystem

/// QEMU's own account of a migration (`query-migrate`, MigrationInfo in qapi/migration.json).
/// Times are QEMU's, in milliseconds; every field is optional because QEMU reports only what
/// applies to the state (an idle QEMU answers `{}`). `raw` keeps everything, for reports.
public struct QEMUMigrationInfo: Sendable, Hashable {
    public var status: QEMUMigrationStatus?
    /// From `migrate` to completion, ms.
    public var totalTimeMilliseconds: Int64?
    /// QEMU's downtime: from stopping the source to the end of the stream, ms.
    public var downtimeMilliseconds: Int64?
    /// Before completion: what QEMU expects the downtime to be, ms.
    public var expectedDowntimeMilliseconds: Int64?
    public var setupTimeMilliseconds: Int64?
    /// Why it failed, in QEMU's words.
    public var errorDescription: String?
    public var ram: RAM?
    public var raw: QMPValue

    /// The `ram` member (MigrationStats): bytes, page counts, throughput.
    public struct RAM: Sendable, Hashable {
        public var transferredBytes: UInt64?
        public var totalBytes: UInt64?
        public var remainingBytes: UInt64?
        /// Pages sent as "all the same byte" (zero pages): a flag, no data.
        public var duplicatePages: UInt64?
        /// Pages sent whole.
        public var normalPages: UInt64?
        public var normalBytes: UInt64?
        /// QEMU's measured throughput, Mbit/s.
        public var megabitsPerSecond: Double?
        public var dirtySyncCount: UInt64?
        public var pagesPerSecond: UInt64?
        public var precopyBytes: UInt64?
        public var downtimeBytes: UInt64?
        public var dirtyPagesRate: UInt64?
        public var pageSize: UInt64?

        init(_ value: QMPValue) {
            func unsigned(_ key: String) -> UInt64? {
                value[key]?.int64Value.flatMap { $0 >= 0 ? UInt64($0) : nil }
            }
            transferredBytes = unsigned("transferred")
            totalBytes = unsigned("total")
            remainingBytes = unsigned("remaining")
            duplicatePages = unsigned("duplicate")
            normalPages = unsigned("normal")
            normalBytes = unsigned("normal-bytes")
            megabitsPerSecond = value["mbps"]?.doubleValue
            dirtySyncCount = unsigned("dirty-sync-count")
            pagesPerSecond = unsigned("pages-per-second")
            precopyBytes = unsigned("precopy-bytes")
            downtimeBytes = unsigned("downtime-bytes")
            dirtyPagesRate = unsigned("dirty-pages-rate")
            pageSize = unsigned("page-size")
        }
    }

    public init(_ value: QMPValue) {
        raw = value
        status = value["status"]?.stringValue.map(QEMUMigrationStatus.init(rawValue:))
        totalTimeMilliseconds = value["total-time"]?.int64Value
        downtimeMilliseconds = value["downtime"]?.int64Value
        expectedDowntimeMilliseconds = value["expected-downtime"]?.int64Value
        setupTimeMilliseconds = value["setup-time"]?.int64Value
        errorDescription = value["error-desc"]?.stringValue
        ram = value["ram"].map(RAM.init)
    }

    /// One line for logs and reports.
    public var summary: String {
        var parts = ["status=\(status?.rawValue ?? "none")"]
        if let total = totalTimeMilliseconds { parts.append("total-time=\(total)ms") }
        if let downtime = downtimeMilliseconds { parts.append("downtime=\(downtime)ms") }
        if let expected = expectedDowntimeMilliseconds { parts.append("expected-downtime=\(expected)ms") }
        if let setup = setupTimeMilliseconds { parts.append("setup-time=\(setup)ms") }
        if let ram {
            if let bytes = ram.transferredBytes { parts.append("transferred=\(ByteCount(bytes).humanReadable)") }
            if let duplicate = ram.duplicatePages { parts.append("duplicate=\(duplicate)") }
            if let normal = ram.normalPages { parts.append("normal=\(normal)") }
            if let mbps = ram.megabitsPerSecond { parts.append("mbps=\(formatFixed(mbps, decimals: 1))") }
            if let syncs = ram.dirtySyncCount { parts.append("dirty-sync-count=\(syncs)") }
        }
        if let error = errorDescription { parts.append("error=\"\(error)\"") }
        return parts.joined(separator: " ")
    }
}
