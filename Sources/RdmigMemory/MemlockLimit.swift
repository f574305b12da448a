#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// RLIMIT_MEMLOCK as the kernel applies it to `mlock` (mm/mlock.c do_mlock): a request is
/// refused when the already locked plus the new bytes exceed the soft limit, unless the
/// thread has CAP_IPC_LOCK. Verbs memory registration is counted separately (pinned_vm,
/// drivers/infiniband/core/umem.c) against the same limit.
public struct MemlockLimit: Codable, Sendable, Equatable, CustomStringConvertible {
    /// Soft limit in bytes; nil is unlimited.
    public var soft: UInt64?
    /// Hard limit in bytes; nil is unlimited.
    public var hard: UInt64?
    /// Bytes this process has locked now (VmLck in /proc/self/status).
    public var locked: UInt64
    /// The calling thread has CAP_IPC_LOCK in its effective set: the limit does not apply.
    public var capIPCLock: Bool

    public init(soft: UInt64?, hard: UInt64?, locked: UInt64, capIPCLock: Bool) {
        self.soft = soft
        self.hard = hard
        self.locked = locked
        self.capIPCLock = capIPCLock
    }

    /// The limits in force for the calling thread.
    public static func current() -> MemlockLimit {
        var limit = rlimit()
        let soft: UInt64?
        let hard: UInt64?
        if getrlimit(memlockResource, &limit) == 0 {
            // RLIM_INFINITY is (rlim_t)-1, a macro Swift cannot import.
            soft = limit.rlim_cur == rlim_t.max ? nil : UInt64(limit.rlim_cur)
            hard = limit.rlim_max == rlim_t.max ? nil : UInt64(limit.rlim_max)
        } else {
            soft = nil
            hard = nil
        }
        return MemlockLimit(
            soft: soft, hard: hard, locked: lockedBytes() ?? 0, capIPCLock: threadHasCapIPCLock())
    }

    /// Bytes locked by this process (VmLck), nil if /proc cannot be read.
    public static func lockedBytes() -> UInt64? {
        guard let status = SysfsTree.readFile("/proc/self/status") else { return nil }
        return ProcStatus.kilobytes("VmLck", in: status).map { $0 * 1024 }
    }

    /// CAP_IPC_LOCK (capability 14, include/uapi/linux/capability.h) in the effective set of
    /// the calling thread; capabilities are per thread, so /proc/thread-self is read.
    public static func threadHasCapIPCLock() -> Bool {
        guard let status = SysfsTree.readFile("/proc/thread-self/status") ?? SysfsTree.readFile("/proc/self/status"),
              let mask = ProcStatus.hexField("CapEff", in: status)
        else { return false }
        return mask & (1 << 14) != 0
    }

    /// Whether locking `bytes` more would pass the kernel's check.
    public func allows(_ bytes: UInt64) -> Bool {
        guard let soft, !capIPCLock else { return true }
        return locked + bytes <= soft
    }

    /// "8 MiB (hard 8 MiB), CAP_IPC_LOCK: limit does not apply" or "unlimited".
    public var description: String {
        func text(_ value: UInt64?) -> String { value.map { ByteCount($0).humanReadable } ?? "unlimited" }
        var result = text(soft)
        if hard != soft { result += " (hard \(text(hard)))" }
        if capIPCLock && soft != nil { result += ", CAP_IPC_LOCK: the limit does not apply" }
        return result
    }

    enum CodingKeys: String, CodingKey {
        case soft, hard, locked
        case capIPCLock = "cap-ipc-lock"
    }

    // JSON writes "unlimited" rather than null, so a reader needs no convention.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func limit(_ key: CodingKeys) throws -> UInt64? {
            if let text = try? container.decode(String.self, forKey: key), text == "unlimited" { return nil }
            return try container.decode(UInt64.self, forKey: key)
        }
        soft = try limit(.soft)
        hard = try limit(.hard)
        locked = try container.decode(UInt64.self, forKey: .locked)
        capIPCLock = try container.decode(Bool.self, forKey: .capIPCLock)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if let soft { try container.encode(soft, forKey: .soft) } else { try container.encode("unlimited", forKey: .soft) }
        if let hard { try container.encode(hard, forKey: .hard) } else { try container.encode("unlimited", forKey: .hard) }
        try container.encode(locked, forKey: .locked)
        try container.encode(capIPCLock, forKey: .capIPCLock)
    }
}

/// Fields of /proc/<pid>/status (Documentation/filesystems/proc.rst).
enum ProcStatus {
    /// "VmLck:\t  2048 kB" gives 2048.
    static func kilobytes(_ field: String, in status: String) -> UInt64? {
        value(field, in: status).flatMap { UInt64($0.split(separator: " ").first ?? "") }
    }

    /// "CapEff:\t000001fffeffffff" gives the mask.
    static func hexField(_ field: String, in status: String) -> UInt64? {
        value(field, in: status).flatMap { UInt64($0, radix: 16) }
    }

    static func value(_ field: String, in status: String) -> String? {
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return String(line.dropFirst(field.count + 1).drop(while: { $0 == " " || $0 == "\t" }))
        }
        return nil
    }
}

/// RLIMIT_MEMLOCK as Glibc imports it (the macro stands for the enum value __RLIMIT_MEMLOCK).
let memlockResource = __rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue)
