#if canImport(Glibc)
import Glibc
#endif
import CNUMA
import RdmigMemory

/// The kernel's own answers, asked directly (not through RdmigMemory), so that the tests
/// check the module against the kernel rather than against itself.
enum KernelAnswers {
    /// Node of the page at `address`: get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR).
    static func nodeOfPage(at address: UnsafeRawPointer) -> Int32? {
        var node: Int32 = -1
        let result = get_mempolicy(&node, nil, 0, UnsafeMutableRawPointer(mutating: address), UInt32(MPOL_F_NODE | MPOL_F_ADDR))
        return result == 0 ? node : nil
    }

    /// The policy of the mapping at `address` and its node mask: get_mempolicy(MPOL_F_ADDR).
    static func policy(at address: UnsafeRawPointer) -> (mode: Int32, nodes: [Int])? {
        var mode: Int32 = -1
        var mask = [UInt](repeating: 0, count: 16)
        let result = mask.withUnsafeMutableBufferPointer {
            get_mempolicy(&mode, $0.baseAddress, UInt($0.count * UInt.bitWidth), UnsafeMutableRawPointer(mutating: address), UInt32(MPOL_F_ADDR))
        }
        guard result == 0 else { return nil }
        var nodes: [Int] = []
        for (word, bits) in mask.enumerated() {
            for bit in 0..<UInt.bitWidth where bits & (1 << UInt(bit)) != 0 { nodes.append(word * UInt.bitWidth + bit) }
        }
        return (mode, nodes)
    }

    /// Node of every page in `[base, base+length)` in steps of `stride`: move_pages with
    /// nodes = NULL only reports where each page is (negative errno for absent pages).
    static func nodesOfPages(_ base: UnsafeRawPointer, length: Int, stride: Int = 4096) -> [Int32] {
        var pages: [UnsafeMutableRawPointer?] = Swift.stride(from: 0, to: length, by: stride).map {
            UnsafeMutableRawPointer(mutating: base + $0)
        }
        var status = [Int32](repeating: Int32.min, count: pages.count)
        let result = move_pages(0, UInt(pages.count), &pages, nil, &status, 0)
        return result == 0 ? status : []
    }

    /// VmLck of this process in bytes.
    static func lockedBytes() -> UInt64 {
        let status = readText("/proc/self/status") ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmLck:") {
            let number = line.split(whereSeparator: { $0 == " " || $0 == "\t" })[1]
            return (UInt64(number) ?? 0) * 1024
        }
        return 0
    }

    /// KernelPageSize of the mapping that starts at `address`, from /proc/self/smaps.
    static func kernelPageSize(ofMappingAt address: UnsafeRawPointer) -> UInt64? {
        let start = String(UInt(bitPattern: address), radix: 16)
        let smaps = readText("/proc/self/smaps") ?? ""
        var inMapping = false
        for line in smaps.split(separator: "\n") {
            let first = line.split(separator: " ").first ?? ""
            if !first.hasSuffix(":"), let dash = first.firstIndex(of: "-") {
                inMapping = first[..<dash] == Substring(start)
                continue
            }
            if inMapping, line.hasPrefix("KernelPageSize:") {
                let number = line.split(whereSeparator: { $0 == " " || $0 == "\t" })[1]
                return UInt64(number).map { $0 * 1024 }
            }
        }
        return nil
    }

    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func writeText(_ text: String, to path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_TRUNC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return text.withCString { Glibc.write(fd, $0, strlen($0)) } == text.utf8.count
    }
}

/// Test-only control over the calling thread's capabilities and the process's memlock limit.
enum Privileges {
    /// Removes CAP_IPC_LOCK from the effective set of the calling thread only (capabilities
    /// are per thread; capset with pid 0 changes the caller). glibc exports capget/capset but
    /// declares them in no header, so they are looked up by name.
    static func dropIPCLockFromCallingThread() -> Bool {
        typealias CapCall = @convention(c) (UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Int32
        guard let getSymbol = dlsym(nil, "capget"), let setSymbol = dlsym(nil, "capset") else { return false }
        let capget = unsafeBitCast(getSymbol, to: CapCall.self)
        let capset = unsafeBitCast(setSymbol, to: CapCall.self)
        // struct __user_cap_header_struct { u32 version; int pid; } with _LINUX_CAPABILITY_VERSION_3,
        // and two struct __user_cap_data_struct { u32 effective, permitted, inheritable; }.
        var header: [UInt32] = [0x2008_0522, 0]
        var data = [UInt32](repeating: 0, count: 6)
        let got = header.withUnsafeMutableBytes { h in data.withUnsafeMutableBytes { d in capget(h.baseAddress!, d.baseAddress!) } }
        guard got == 0 else { return false }
        data[0] &= ~(UInt32(1) << 14)  // CAP_IPC_LOCK is 14, in the first 32-bit word
        let set = header.withUnsafeMutableBytes { h in data.withUnsafeMutableBytes { d in capset(h.baseAddress!, d.baseAddress!) } }
        return set == 0
    }

    static func memlockSoftLimit() -> rlimit {
        var limit = rlimit()
        _ = getrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &limit)
        return limit
    }

    @discardableResult
    static func setMemlock(_ limit: rlimit) -> Bool {
        var copy = limit
        return setrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &copy) == 0
    }
}
