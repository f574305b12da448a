#if canImport(Glibc)
import Glibc
#endif
@testable import RdmigMigration

/// A fresh directory under `parent`, removed (with its files) by `remove()`.
struct TemporaryDirectory {
    let path: String

    init(under parent: String = "/tmp") {
        var template = Array("\(parent)/rdmig-migration-test-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp under \(parent) failed")
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    func file(_ name: String) -> String { "\(path)/\(name)" }

    func remove() {
        if let directory = opendir(path) {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
                }
                if name != "." && name != ".." { unlink(file(name)) }
            }
            closedir(directory)
        }
        rmdir(path)
    }
}

func makeRegion(
    id: UInt32 = 0, base: UInt64 = 0, pages: Int, pageSize: Int = 4096, backing: GuestMemoryBacking = .anonymous
) throws -> GuestMemoryRegion {
    try GuestMemoryRegion(
        layout: GuestMemoryRegionLayout(id: id, guestPhysicalBase: base, length: UInt64(pages * pageSize),
                                        pageSize: UInt64(pageSize)),
        backing: backing)
}

/// Sleeps the calling thread (tests only; the library never sleeps like this).
func sleepMilliseconds(_ milliseconds: Int) {
    var request = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
    var remaining = timespec()
    while nanosleep(&request, &remaining) != 0 { request = remaining }
}

/// The file system type (from /proc/self/mounts) of the mount that holds `path`.
func fileSystemType(of path: String) -> String? {
    let fd = open("/proc/self/mounts", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fd, &buffer, buffer.count)
        if count <= 0 { break }
        bytes += buffer[..<count]
    }
    var best: (mountPoint: String, type: String)?
    for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count >= 3 else { continue }
        let mountPoint = String(fields[1])
        let covers = mountPoint == "/" || path == mountPoint || path.hasPrefix(mountPoint + "/")
        if covers, mountPoint.count >= (best?.mountPoint.count ?? -1) { best = (mountPoint, String(fields[2])) }
    }
    return best?.type
}
