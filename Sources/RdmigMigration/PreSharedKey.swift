#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import RdmigSystem

/// The key both services of a migration share; AUTH proves possession without sending it.
///
/// The file holds at least 16 random bytes (raw, or hex text). It must not be readable by
/// other users: a key others can read authenticates anyone.
public struct PreSharedKey: Sendable {
    public let bytes: [UInt8]
    public let path: String

    public static let minimumBytes = 16

    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// `$RDMIG_KEY_FILE`, else `$XDG_CONFIG_HOME/rdmig/psk` (`~/.config/rdmig/psk`).
    public static var defaultPath: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["RDMIG_KEY_FILE"], !path.isEmpty { return path }
        let config = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (environment["HOME"] ?? "/root") + "/.config"
        return config + "/rdmig/psk"
    }

    public static func load(path: String) throws(Error) -> PreSharedKey {
        var status = stat()
        guard stat(path, &status) == 0 else {
            let error = SystemCallError(call: "stat", errno: SystemCall.currentErrno(), context: path)
            throw Error(description: "cannot read the pre-shared key \(path): \(error.reason): create it with `rdmig keygen \(path)` and copy it to both hosts")
        }
        guard status.st_mode & 0o077 == 0 else {
            throw Error(description: "the pre-shared key \(path) is readable by other users (mode \(String(status.st_mode & 0o777, radix: 8))): run `chmod 600 \(path)`")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw Error(description: "cannot read the pre-shared key \(path)")
        }
        var bytes = [UInt8](data)
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if text.count >= 2 * minimumBytes, text.count % 2 == 0, text.allSatisfy(\.isHexDigit) {
            bytes = stride(from: 0, to: text.count, by: 2).map { offset in
                let start = text.index(text.startIndex, offsetBy: offset)
                return UInt8(text[start..<text.index(start, offsetBy: 2)], radix: 16)!
            }
        }
        guard bytes.count >= minimumBytes else {
            throw Error(description: "the pre-shared key \(path) has \(bytes.count) bytes; at least \(minimumBytes) random bytes are needed: `rdmig keygen \(path)`")
        }
        return PreSharedKey(bytes: bytes, path: path)
    }

    /// Writes 32 fresh random bytes as hex to `path` (mode 0600), creating its folder.
    @discardableResult
    public static func generate(path: String, overwrite: Bool = false) throws(Error) -> PreSharedKey {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw Error(description: "cannot create \(folder) for the pre-shared key: \(error.localizedDescription)")
            }
        }
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { [UInt8]($0) }
        let text = key.map { String($0, radix: 16).leftPadded(to: 2) }.joined() + "\n"
        // Written whole under a temporary name, then put in place atomically: the other
        // service of a pair started at the same moment must never read a half-written key.
        let temporary = "\(path).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let error = SystemCallError(call: "open", errno: SystemCall.currentErrno(), context: temporary)
            throw Error(description: "cannot create the pre-shared key: \(error)")
        }
        let written = text.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
        defer { unlink(temporary) }
        guard written == text.utf8.count else {
            throw Error(description: "cannot write the pre-shared key \(path)")
        }
        let placed = overwrite ? rename(temporary, path) : link(temporary, path)
        guard placed == 0 else {
            let error = SystemCallError(call: overwrite ? "rename" : "link", errno: SystemCall.currentErrno(), context: path)
            throw Error(description: error.errno == EEXIST
                ? "a pre-shared key already exists at \(path): keep it, or pass --force to replace it"
                : "cannot create the pre-shared key: \(error)")
        }
        return PreSharedKey(bytes: key, path: path)
    }

    /// The default key for a paired launch on one machine: loaded, or created on first use.
    public static func loadOrCreateDefault() throws(Error) -> (key: PreSharedKey, created: Bool) {
        let path = defaultPath
        if access(path, F_OK) == 0 { return (try load(path: path), false) }
        do {
            return (try generate(path: path), true)
        } catch {
            // Another process of the pair may have created it between our check and open.
            if access(path, F_OK) == 0 { return (try load(path: path), false) }
            throw error
        }
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
