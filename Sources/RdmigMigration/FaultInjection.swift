#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Faults the multi-process tests inject into real `rdmig` processes, named in the
/// environment variable RDMIG_FAULT (comma-separated): a process that stalls at a protocol
/// point so a test can kill it exactly there, or a peer that speaks another protocol version.
/// Never set in production; every use is announced on stderr.
public enum FaultInjection {
    public static let active: [String: String] = parse(ProcessInfo.processInfo.environment["RDMIG_FAULT"] ?? "")

    static func parse(_ text: String) -> [String: String] {
        var faults: [String: String] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            faults[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return faults
    }

    /// Stalls here for a minute (long enough to be killed) when `point` is injected.
    public static func stall(at point: String) {
        guard active[point] != nil else { return }
        FileHandle.standardError.write(Data("rdmig fault: stalling at \(point)\n".utf8))
        sleep(60)
    }

    /// The protocol version HELLO announces when `hello-version=N` is injected.
    public static var helloVersion: UInt16? { active["hello-version"].flatMap { UInt16($0) } }
}
