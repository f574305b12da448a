/// What `Tests/softroce/verbs-suite.sh` printed, read back: the conformance verdicts from inside
/// the guest, the bandwidth ratio to `ib_write_bw`, the migration over rxe, each step's verdict
/// and the final verdict.
struct VerbsSuiteOutput {
    struct ConformanceTotals: Equatable {
        var passed: Int
        var failed: Int
        var skipped: Int
    }

    struct Bandwidth: Equatable {
        /// Both in MiB/s (perftest's "MB/sec" is 2^20 bytes per second).
        var rdmig: Double
        var ibWriteBW: Double
        var ratio: Double
    }

    /// The migration step's result line (the guest prints it only when both sides exited 0
    /// and both reports say completed and verified).
    struct Migration: Equatable {
        /// Milliseconds, from the source's report.
        var downtime: Double
        var totalTime: Double
        var iterations: Int
    }

    enum Verdict: String {
        case pass = "PASS", fail = "FAIL", skip = "SKIP"
    }

    let text: String

    init(_ text: String) {
        self.text = text
    }

    private var lines: [Substring] { text.split(separator: "\n", omittingEmptySubsequences: false) }

    /// The first "N passed, N failed, N skipped" line: the conformance step runs first, and an
    /// extra step may print such a line too.
    var conformanceTotals: ConformanceTotals? {
        for line in lines {
            if let match = line.wholeMatch(of: /(\d+) passed, (\d+) failed, (\d+) skipped/),
               let passed = Int(match.1), let failed = Int(match.2), let skipped = Int(match.3) {
                return ConformanceTotals(passed: passed, failed: failed, skipped: skipped)
            }
        }
        return nil
    }

    /// Case name to verdict, from the conformance step's "PASS name (N ms)", "FAIL name: why"
    /// and "SKIP name: why" lines.
    var conformanceCases: [String: Verdict] { conformanceCases(inStep: "conformance") }

    /// The same for any step that runs the conformance suite (e.g. "conformance-busy-poll").
    func conformanceCases(inStep step: String) -> [String: Verdict] {
        var verdicts: [String: Verdict] = [:]
        var inConformance = false
        for line in lines {
            if line.hasPrefix("== step ") {
                inConformance = line == "== step \(step)"
                continue
            }
            guard inConformance,
                  let match = line.prefixMatch(of: /(PASS|FAIL|SKIP) ([A-Za-z0-9_]+)/),
                  let verdict = Verdict(rawValue: String(match.1)) else { continue }
            verdicts[String(match.2)] = verdict
        }
        return verdicts
    }

    var bandwidth: Bandwidth? {
        for line in lines {
            if let match = line.prefixMatch(of: /verbs-vs-ib_write_bw: rdmig ([0-9.]+) MiB\/s, ib_write_bw ([0-9.]+) MiB\/s, ratio ([0-9.]+)/),
               let rdmig = Double(match.1), let ibWriteBW = Double(match.2), let ratio = Double(match.3) {
                return Bandwidth(rdmig: rdmig, ibWriteBW: ibWriteBW, ratio: ratio)
            }
        }
        return nil
    }

    var migration: Migration? {
        for line in lines {
            if let match = line.prefixMatch(of: /migration over rxe: completed, verified, downtime ([0-9.]+) ms, total ([0-9.]+) ms, (\d+) iterations/),
               let downtime = Double(match.1), let totalTime = Double(match.2), let iterations = Int(match.3) {
                return Migration(downtime: downtime, totalTime: totalTime, iterations: iterations)
            }
        }
        return nil
    }

    /// Step name to verdict, from the guest's "-- step NAME: PASS (N s)" lines.
    var steps: [String: Verdict] {
        var verdicts: [String: Verdict] = [:]
        for line in lines {
            if let match = line.prefixMatch(of: /-- step (\S+): (PASS|FAIL)/), let verdict = Verdict(rawValue: String(match.2)) {
                verdicts[String(match.1)] = verdict
            }
        }
        return verdicts
    }

    /// The host script's last line: "rdmig softroce verbs suite: PASS|FAIL|SKIP ...".
    var verdict: (verdict: Verdict, detail: String)? {
        for line in lines.reversed() {
            if let match = line.prefixMatch(of: /rdmig softroce verbs suite: (PASS|FAIL|SKIP):? ?(.*)/),
               let verdict = Verdict(rawValue: String(match.1)) {
                return (verdict, String(match.2))
            }
        }
        return nil
    }
}
