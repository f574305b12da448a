#if canImport(Glibc)
import Glibc
#endif

/// A child's log file copied onto this process's stderr as it grows (so a person sees it
/// live) and kept for scanning (for `rdmig dest`'s "listening on" line).
final class LogFollower {
    let path: String
    private let descriptor: Int32
    private(set) var text = ""

    /// Opens `path` for reading; the writer created it already.
    init(path: String) throws(RdmigCommandError) {
        self.path = path
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw RdmigCommandError("cannot read \(path): errno \(errno)") }
    }

    deinit { close(descriptor) }

    /// Copies what was written since the last call.
    func pump() {
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { return }
            buffer.withUnsafeBytes { raw in
                var offset = 0
                while offset < count {
                    let written = write(2, raw.baseAddress! + offset, count - offset)
                    if written <= 0 { break }
                    offset += written
                }
            }
            text += String(decoding: buffer[0..<count], as: UTF8.self)
        }
    }
}
