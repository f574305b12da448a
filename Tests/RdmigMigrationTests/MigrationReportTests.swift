import Foundation
import Testing
import RdmigSystem
@testable import RdmigMigration

@Suite struct MigrationReportTests {
    func sample() -> MigrationReport {
        MigrationReport(
            status: .completed, totalTime: 1834.5678, downtime: 21.25, setupTime: 40.5, iterations: 5,
            transferred: 1_200_000_000, zeroPages: 1000, normalPages: 290_000, normalBytes: 290_000 * 4096,
            dirtyRate: 268_435_456, bandwidth: 1_073_741_824,
            vfStateBytes: MigrationReport.DeviceStateBytes(preCopy: 300_000, stopCopy: 20_000),
            finalBytes: 17_179_869, expectedDowntime: 19.5, verified: true,
            passes: [MigrationReport.Pass(iteration: 1, bytes: 1 << 30, time: 1000, dirtyBytes: 1 << 28, throttle: 0,
                                          decision: "continue")])
    }

    @Test func jsonUsesQMPStyleKebabCaseKeys() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(sample())
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let required = ["status", "total-time", "downtime", "setup-time", "iterations", "transferred", "duplicate",
                        "zero-pages", "normal-pages", "normal-bytes", "dirty-rate", "bandwidth", "vf-state-bytes",
                        "switchover-bandwidth", "final-bytes", "downtime-lower-bound", "expected-downtime", "cpu-throttle-percentage",
                        "verified", "passes", "encrypted", "channels", "link-bandwidth", "precopy-bandwidth"]
        for key in required { #expect(object[key] != nil, "missing \(key)") }
        #expect(Set(object.keys) == Set(required))
        #expect(object["status"] as? String == "completed")
        #expect(object["verified"] as? Bool == true)
        #expect(object["total-time"] as? Double == 1834.568)
        let device = try #require(object["vf-state-bytes"] as? [String: Any])
        #expect(device["pre-copy"] as? Int == 300_000)
        #expect(device["stop-copy"] as? Int == 20_000)
        let pass = try #require((object["passes"] as? [[String: Any]])?.first)
        #expect(Set(pass.keys) == ["iteration", "bytes", "time-ms", "dirty-bytes", "cpu-throttle-percentage", "decision"])
    }

    @Test func lowerBoundIsFinalBytesOverBandwidthInMilliseconds() {
        let report = sample()
        #expect(abs(report.downtimeLowerBound - 17_179_869.0 / 1_073_741_824 * 1000) < 1e-9)
        #expect(abs(report.downtimeRatio! - 21.25 / report.downtimeLowerBound) < 1e-9)
        #expect(MigrationReport(status: .failed).downtimeRatio == nil)
    }

    @Test func theBoundUsesTheBetterOfPreCopyAndStopAndCopyBandwidth() {
        let faster = MigrationReport(status: .completed, downtime: 30, bandwidth: 500e6, switchoverBandwidth: 800e6, finalBytes: 16_000_000)
        #expect(abs(faster.downtimeLowerBound - 20) < 1e-9)
        let slower = MigrationReport(status: .completed, downtime: 40, bandwidth: 500e6, switchoverBandwidth: 400e6, finalBytes: 16_000_000)
        #expect(abs(slower.downtimeLowerBound - 32) < 1e-9)
        #expect(faster.text.contains("stop-and-copy pass"))
        #expect(MigrationReport(status: .completed).text.contains("bandwidth             not measured"))
    }

    @Test func jsonRoundTripsAndAcceptsQMPsOlderDuplicateName() throws {
        let data = try JSONEncoder().encode(sample())
        let decoded = try JSONDecoder().decode(MigrationReport.self, from: data)
        #expect(decoded.zeroPages == 1000)
        #expect(decoded.status == .completed)
        #expect(decoded.vfStateBytes.total == 320_000)
        let old = """
        {"status":"failed","total-time":5,"downtime":0,"setup-time":1,"iterations":0,"transferred":0,
         "duplicate":7,"normal-pages":0,"dirty-rate":0,"bandwidth":0,"vf-state-bytes":{"pre-copy":0,"stop-copy":0},
         "downtime-lower-bound":0,"verified":false,"error-desc":"peer closed the connection"}
        """
        let failed = try JSONDecoder().decode(MigrationReport.self, from: Data(old.utf8))
        #expect(failed.zeroPages == 7)
        #expect(failed.errorDescription == "peer closed the connection")
    }

    @Test func textNamesEveryFigureWithUnits() {
        let text = sample().text
        #expect(text.contains("status                completed"))
        #expect(text.contains("downtime              21.2 ms (1.33 x lower bound)")
            || text.contains("downtime              21.3 ms (1.33 x lower bound)"))
        #expect(text.contains("bandwidth             1.00 GiB/s"))
        #expect(text.contains("vf state              292.97 KiB pre-copy, 19.53 KiB stop-copy"))
        #expect(text.contains("verified              yes"))
    }

    /// The source measures the link; a report without that figure (the destination's) names
    /// the page channels only, not a "not measured" link.
    @Test func theLinkLineIsTheSourcesAndThePageChannelsEverySides() {
        var measured = sample()
        measured.channels = 2
        measured.linkBandwidth = 3 * 1_073_741_824
        #expect(measured.text.contains("link                  3.00 GiB/s over 2 page channels"), "\(measured.text)")
        var destination = sample()
        destination.channels = 2
        #expect(destination.text.contains("page channels         2"), "\(destination.text)")
        #expect(!destination.text.contains("link "), "\(destination.text)")
    }
}
