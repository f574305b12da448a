import Foundation
@testable import RdmigQEMU
import RdmigSystem
import Testing

@Suite("QMP values, QEMU figures and configurations")
struct QMPValueTests {
    @Test func jsonKeepsIntegersBooleansAndDoublesApart() throws {
        let value = try QMPValue(json: Data(#"{"pass": 3, "mbps": 1354.38, "running": false, "name": null, "list": [1, "a"]}"#.utf8))
        #expect(value["pass"] == .int(3))
        #expect(value["mbps"] == .double(1354.38))
        #expect(value["running"] == .bool(false))
        #expect(value["name"] == .null)
        #expect(value["list"] == [1, "a"])
        #expect(value["missing"] == nil)
        #expect(value["pass"]?.doubleValue == 3)
        #expect(try QMPValue(json: value.jsonData()) == value)
    }

    @Test func requestsEncodeCompactlyWithPathsUnescaped() {
        let request: QMPValue = ["execute": "getfd", "arguments": ["fdname": "a/b"]]
        #expect(request.jsonString == #"{"arguments":{"fdname":"a/b"},"execute":"getfd"}"#)
    }

    @Test func timestampsAreWallClockMicrosecondsAndQEMUsMinusOneMeansNone() {
        let stop = QMPTimestamp(["seconds": 1_795_698_515, "microseconds": 968_778])
        let resume = QMPTimestamp(["seconds": 1_795_698_516, "microseconds": 5_853])
        #expect(stop != nil && resume != nil)
        #expect(resume!.duration(since: stop!) == .microseconds(37_075))
        #expect(stop!.description == "1795698515.968778")
        #expect(QMPTimestamp(["seconds": -1, "microseconds": -1]) == nil)
        let downtime = QEMUMigrationDowntime(sourceStop: stop!, destinationResume: resume!, qemuDowntimeMilliseconds: 37)
        #expect(downtime.description == "downtime 37 ms from source STOP to destination RESUME; QEMU's own downtime 37 ms")
    }

    /// Found while writing the qmp-message fuzz target (Tests/fuzz/corpus/qmp-message/
    /// regression-timestamp-overflow): an event stamped with absurd seconds trapped in
    /// `microsecondsSinceEpoch`, which the QEMU mode's destination computes for every RESUME.
    @Test func stampsThatAreNoTimeAreNone() throws {
        let largest = QMPTimestamp.maximumSeconds
        let last = try #require(QMPTimestamp(["seconds": .int(largest), "microseconds": 999_999]))
        #expect(last.microsecondsSinceEpoch == largest * 1_000_000 + 999_999)
        #expect(QMPTimestamp(["seconds": .int(largest + 1), "microseconds": 0]) == nil)
        #expect(QMPTimestamp(["seconds": 9_223_372_036_854_775, "microseconds": 999_999]) == nil)
        #expect(QMPTimestamp(["seconds": 1_795_698_515, "microseconds": 1_000_000]) == nil)
        #expect(QMPTimestamp(["seconds": 1_795_698_515, "microseconds": .int(Int64.max)]) == nil)
        let event = try QMPValue(json: Data(#"{"timestamp": {"seconds": 9223372036854775, "microseconds": 999999}, "event": "RESUME"}"#.utf8))
        #expect(QMPEvent(message: event)?.timestamp == nil)
    }

    /// A `query-migrate` reply QEMU 10.0.2 gave on this machine after an fd: migration.
    @Test func queryMigrateFiguresAreReadFromQEMUsReply() throws {
        let reply = try QMPValue(json: Data(#"""
        {"status": "completed", "setup-time": 0, "downtime": 37, "total-time": 816, "ram": {"total": 268771328,
         "postcopy-requests": 0, "dirty-sync-count": 3, "multifd-bytes": 0, "pages-per-second": 262598,
         "downtime-bytes": 19409214, "page-size": 4096, "remaining": 0, "postcopy-bytes": 0, "mbps": 1354.388549019608,
         "transferred": 138147632, "dirty-sync-missed-zero-copy": 0, "precopy-bytes": 118624475, "duplicate": 35974,
         "dirty-pages-rate": 0, "normal-bytes": 137441280, "normal": 33555}}
        """#.utf8))
        let info = QEMUMigrationInfo(reply)
        #expect(info.status == .completed)
        #expect(info.totalTimeMilliseconds == 816)
        #expect(info.downtimeMilliseconds == 37)
        #expect(info.setupTimeMilliseconds == 0)
        #expect(info.ram?.transferredBytes == 138_147_632)
        #expect(info.ram?.duplicatePages == 35974)
        #expect(info.ram?.normalPages == 33555)
        #expect(info.ram?.downtimeBytes == 19_409_214)
        #expect(info.ram?.megabitsPerSecond == 1354.388549019608)
        #expect(info.summary.hasPrefix("status=completed total-time=816ms downtime=37ms setup-time=0ms transferred=131.75 MiB"))
        let idle = QEMUMigrationInfo(.object([:]))
        #expect(idle.status == nil && idle.ram == nil)
        let failed = QEMUMigrationInfo(["status": "failed", "error-desc": "Channel error: Input/output error"])
        #expect(failed.errorDescription == "Channel error: Input/output error")
    }

    @Test func migrationStatusesKnowWhenQEMUIsDoneAndPassUnknownOnesThrough() {
        #expect(QEMUMigrationStatus.completed.isFinished)
        #expect(QEMUMigrationStatus.cancelled.isFinished)
        #expect(!QEMUMigrationStatus.preSwitchover.isFinished)
        #expect(QEMUMigrationStatus.preSwitchover.isInProgress)
        #expect(!QEMUMigrationStatus.none.isInProgress)
        #expect(QEMUMigrationStatus(rawValue: "postcopy-recover-setup").isInProgress)
    }

    @Test func versionsComeFromTheGreetingShape() {
        let version = QEMUVersion(["qemu": ["major": 10, "minor": 0, "micro": 2], "package": "Debian 1:10.0.2"])
        #expect(version?.number == "10.0.2")
        #expect(version! > QEMUVersion(major: 9, minor: 2, micro: 0))
        #expect(QEMUVersion(["qemu": ["major": 10]]) == nil)
    }

    @Test func sourceConfigurationsQEMUWouldRefuseAreExplained() {
        let good = QEMUSourceConfiguration(maxBandwidth: ByteRate(bytesPerSecond: 10 << 30))
        #expect(good.problem == nil)
        #expect(good.downtimeLimitMilliseconds == 300)
        var zero = good
        zero.maxBandwidth = ByteRate(bytesPerSecond: 0)
        #expect(zero.problem?.contains("max-bandwidth must be above 0") == true)
        var long = good
        long.downtimeLimit = .seconds(2001)
        #expect(long.problem?.contains("0 to 2000 s") == true)
        var numeric = good
        numeric.fdName = "3"
        #expect(numeric.problem?.contains("fd:N") == true)
        #expect(QEMUDestinationConfiguration(fdName: "").problem != nil)
    }

    @Test func theFramerSplitsMessagesAcrossReadsAndDropsCarriageReturns() {
        var framer = QMPLineFramer(limit: 64)
        func feed(_ text: String) {
            Array(text.utf8).withUnsafeBytes { framer.append($0) }
        }
        feed("{\"a\":1}\r\n{\"b\"")
        #expect(framer.nextLine().map { String(decoding: $0, as: UTF8.self) } == "{\"a\":1}")
        #expect(framer.nextLine() == nil)
        feed(":2}\n")
        #expect(framer.nextLine().map { String(decoding: $0, as: UTF8.self) } == "{\"b\":2}")
        #expect(framer.pendingCount == 0)
        feed(String(repeating: "x", count: 65))
        #expect(framer.isOverLimit)
    }
}
