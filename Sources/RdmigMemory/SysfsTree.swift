#if canImport(Glibc)
import Glibc
#endif

/// Read-only access to sysfs (or to a copy of its shape under another root, for tests that
/// describe a machine this one is not: several nodes, a NIC on node 1).
///
/// Without Foundation: small files are read with open/read, directories with opendir.
public struct SysfsTree: Sendable {
    /// `/sys` on a real machine.
    public let root: String

    public init(root: String = "/sys") {
        self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
    }

    public func path(_ relative: String) -> String {
        relative.hasPrefix("/") ? root + relative : root + "/" + relative
    }

    /// The file's text without the trailing newline, or nil if it cannot be read.
    public func contents(_ relative: String) -> String? {
        SysfsTree.readFile(path(relative))
    }

    public func integer(_ relative: String) -> Int? {
        contents(relative).flatMap { Int($0.filter { !$0.isWhitespace }) }
    }

    public func exists(_ relative: String) -> Bool {
        access(path(relative), F_OK) == 0
    }

    /// Entry names of a directory (without `.` and `..`), sorted; empty if it is missing.
    public func list(_ relative: String) -> [String] {
        guard let directory = opendir(path(relative)) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// The canonical absolute path after following symlinks (sysfs class entries link into
    /// /sys/devices), relative to `root`; nil if it does not resolve.
    public func resolve(_ relative: String) -> String? {
        guard let resolved = realpath(path(relative), nil) else { return nil }
        defer { free(resolved) }
        let full = String(cString: resolved)
        guard let rootResolved = realpath(root, nil) else { return nil }
        defer { free(rootResolved) }
        let rootText = String(cString: rootResolved)
        guard full.hasPrefix(rootText) else { return nil }
        return String(full.dropFirst(rootText.count))
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        var text = String(decoding: bytes, as: UTF8.self)
        while let last = text.last, last == "\n" || last == " " { text.removeLast() }
        return text
    }
}
