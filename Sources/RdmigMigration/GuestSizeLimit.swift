import Foundation
import RdmigMemory
import RdmigSystem

/// The largest guest a destination accepts when none is configured: what this host can pin
/// when LAYOUT arrives. The whole guest is mlock'ed before any window is exported, so a
/// larger one would fail half-mapped at best, and at worst pin the memory the host itself
/// needs (pinned pages cannot be reclaimed or swapped: the OOM killer picks something else).
public struct GuestSizeLimit: Sendable, Equatable, CustomStringConvertible {
    public var bytes: UInt64
    /// How `bytes` was found, for the refusal ("MemAvailable 12 GiB less a 1 GiB reserve").
    public var reason: String

    public init(bytes: UInt64, reason: String) {
        self.bytes = bytes
        self.reason = reason
    }

    /// What the host keeps for itself: 1/16 of its memory, at least 256 MiB and at most 4 GiB
    /// (the kernel, page cache for the service's own files, the other processes).
    public static func reserve(memoryTotal: UInt64) -> UInt64 {
        min(max(memoryTotal / 16, 256 << 20), 4 << 30)
    }

    /// The limit from MemAvailable (else MemTotal) less the reserve, and from RLIMIT_MEMLOCK
    /// less what is locked already unless CAP_IPC_LOCK lifts it: the smaller one.
    public static func pinnable(memoryAvailable: UInt64?, memoryTotal: UInt64?, memlock: MemlockLimit) -> GuestSizeLimit {
        var limit = GuestSizeLimit(bytes: UInt64.max, reason: "")
        if let free = memoryAvailable ?? memoryTotal {
            let reserve = reserve(memoryTotal: memoryTotal ?? free)
            let name = memoryAvailable != nil ? "MemAvailable" : "MemTotal"
            limit = GuestSizeLimit(bytes: free > reserve ? free - reserve : 0,
                                   reason: "\(name) \(ByteCount(free).humanReadable) less a \(ByteCount(reserve).humanReadable) reserve for the host")
        }
        if !memlock.capIPCLock, let soft = memlock.soft {
            let left = soft > memlock.locked ? soft - memlock.locked : 0
            if left < limit.bytes {
                limit = GuestSizeLimit(bytes: left, reason: "RLIMIT_MEMLOCK \(ByteCount(soft).humanReadable)"
                    + (memlock.locked > 0 ? " less \(ByteCount(memlock.locked).humanReadable) locked already" : "")
                    + " (raise it with LimitMEMLOCK= / ulimit -l, or run with CAP_IPC_LOCK)")
            }
        }
        if limit.bytes == UInt64.max {
            // Neither /proc/meminfo nor a memlock limit: the old fixed bound.
            limit = GuestSizeLimit(bytes: 1 << 40, reason: "no /proc/meminfo and no memlock limit: 1 TiB")
        }
        return limit
    }

    /// The limit on this host now.
    public static func current() -> GuestSizeLimit {
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        return pinnable(memoryAvailable: kilobytes("MemAvailable", in: meminfo), memoryTotal: kilobytes("MemTotal", in: meminfo),
                        memlock: MemlockLimit.current())
    }

    /// "MemAvailable:   12345678 kB" in /proc/meminfo, in bytes.
    static func kilobytes(_ field: String, in meminfo: String) -> UInt64? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix(field + ":") {
            let value = line.dropFirst(field.count + 1).split(separator: " ").first.flatMap { UInt64($0) }
            return value.flatMap { $0.multipliedReportingOverflow(by: 1024).overflow ? nil : $0 * 1024 }
        }
        return nil
    }

    public var description: String { "\(ByteCount(bytes).humanReadable) (\(reason))" }
}
