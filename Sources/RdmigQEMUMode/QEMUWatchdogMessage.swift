import Foundation
import RdmigQEMU
import RdmigSystem

/// One line from `rdmig source --qemu-qmp` to its QEMU watchdog, over the pipe that is the
/// watchdog's stdin: a JSON object naming the step in `watchdog`. The pipe's end without
/// `release` is the news that the service died.
enum QEMUWatchdogMessage: Equatable, Sendable {
    /// Before the first change to QEMU: what to restore, and how long QEMU may wait at
    /// pre-switchover before the watchdog stops the service and recovers QEMU itself.
    case arm(QEMUSourceRecovery.Plan, preSwitchoverLimit: Duration)
    /// QEMU stopped the guest and waits at pre-switchover: the limit's clock starts.
    case preSwitchover
    /// `migrate-continue` follows: hands off QEMU unless it is still at pre-switchover.
    case continuing
    /// The service is done with QEMU (its own clean-up ran): the watchdog exits doing nothing.
    case release

    var line: String {
        let value: QMPValue
        switch self {
        case .arm(let plan, let limit):
            value = ["watchdog": "arm", "plan": plan.qmpValue, "pre-switchover-limit-ms": .int(Int64(limit.milliseconds.rounded()))]
        case .preSwitchover:
            value = ["watchdog": "pre-switchover"]
        case .continuing:
            value = ["watchdog": "continuing"]
        case .release:
            value = ["watchdog": "release"]
        }
        return value.jsonString + "\n"
    }

    init?(line: some Collection<UInt8>) {
        guard let value = try? QMPValue(json: Data(line)), let step = value["watchdog"]?.stringValue else { return nil }
        switch step {
        case "arm":
            guard let plan = value["plan"].flatMap(QEMUSourceRecovery.Plan.init(qmpValue:)),
                  let limit = value["pre-switchover-limit-ms"]?.int64Value, limit > 0 else { return nil }
            self = .arm(plan, preSwitchoverLimit: .milliseconds(limit))
        case "pre-switchover": self = .preSwitchover
        case "continuing": self = .continuing
        case "release": self = .release
        default: return nil
        }
    }
}
