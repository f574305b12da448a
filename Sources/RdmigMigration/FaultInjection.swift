#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Faults the multi-process tests inject into real `rdmig` processes, named in the
/// environment variable RDMIG_FAULT (comma-separated): a process that stalls at a protocol
/// point so a test can kill it exactly there, or a peer that speaks another protocol version.
///
/// Only debug builds (the ones `swift build` and the tests use) read the variable: in a
/// release build every hook is an empty inline function, so no environment variable can make
/// a production binary stall or lie about its protocol version, and the hook's text is not in
/// the binary at all. Every use in a debug build is announced on stderr.
public enum FaultInjection {
    #if DEBUG
    public static let active: [String: String] = parse(ProcessInfo.processInfo.environment["RDMIG_FAULT"] ?? "")

    static func parse(_ text: String) -> [String: String] {
        var faults: [String: String] = [:]
        for item in text.split(separator: ",") {
            let parts = item.split(separator: "=", maxSplits: 1)
            faults[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return faults
    }

    /// Stalls here when `point` is injected: for a minute (long enough to be killed), or for
    /// `point=SECONDS` (a peer that goes silent for a while and comes back).
    public static func stall(at point: String) {
        guard let value = active[point] else { return }
        FileHandle.standardError.write(Data("rdmig fault: stalling at \(point)\n".utf8))
        sleep(UInt32(value) ?? 60)
        if UInt32(value) != nil { FileHandle.standardError.write(Data("rdmig fault: going on after \(point)\n".utf8)) }
    }

    /// The protocol version HELLO announces when `hello-version=N` is injected.
    public static var helloVersion: UInt16? { active["hello-version"].flatMap { UInt16($0) } }

    /// Whether the switch `name` is injected (a safeguard turned off, so a test can measure
    /// what happens without it).
    public static func injected(_ name: String) -> Bool {
        guard active[name] != nil else { return false }
        FileHandle.standardError.write(Data("rdmig fault: \(name)\n".utf8))
        return true
    }

    /// With `announce` injected, says on stderr that the migration reached `phase`, so the
    /// fault matrix (Tests/faults) can strike at that moment.
    public static func reached(_ phase: String) {
        guard active["announce"] != nil else { return }
        FileHandle.standardError.write(Data("rdmig phase: \(phase)\n".utf8))
    }
    #else
    /// Release build: no fault is ever injected.
    @inline(__always)
    public static func stall(at point: String) {}

    /// Release build: HELLO always announces this build's protocol version.
    @inline(__always)
    public static var helloVersion: UInt16? { nil }

    /// Release build: every safeguard is on.
    @inline(__always)
    public static func injected(_ name: String) -> Bool { false }

    /// Release build: no phase is announced.
    @inline(__always)
    public static func reached(_ phase: String) {}
    #endif
}
