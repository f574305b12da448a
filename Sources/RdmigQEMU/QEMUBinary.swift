#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigSystem

/// The QEMU executable that `rdmig qemu-launch` and the QEMU tests start: the path asked for,
/// else `RDMIG_QEMU`, else `qemu-system-x86_64`, a bare name looked up on PATH (the choice
/// Tests/qemu-guest/qemu-lib.sh `qemu_binary` makes for the test scripts).
public struct QEMUBinary: Sendable, Hashable, CustomStringConvertible {
    public static let defaultName = "qemu-system-x86_64"

    public let path: String

    public struct LookupError: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    public var description: String { path }

    /// A binary at a known path, not checked (`locate` checks).
    public init(path: String) {
        self.path = path
    }

    /// The name asked for: `RDMIG_QEMU`, or the default.
    public static func requestedName(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        environment["RDMIG_QEMU"].flatMap { $0.isEmpty ? nil : $0 } ?? defaultName
    }

    /// Finds `name` (a path, or a name searched on PATH), or the requested name when nil.
    public static func locate(
        _ name: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(LookupError) -> QEMUBinary {
        let wanted = name ?? requestedName(environment: environment)
        let install = "install QEMU (Tests/qemu-guest/install-qemu.sh, or apt-get install qemu-system-x86) "
            + "or name the binary with --qemu PATH or RDMIG_QEMU"
        if wanted.contains("/") {
            guard access(wanted, X_OK) == 0 else {
                let reason = access(wanted, F_OK) == 0 ? "is not executable" : "does not exist"
                throw LookupError(description: "QEMU binary \(wanted) \(reason): \(install)")
            }
            return QEMUBinary(path: wanted)
        }
        let searchPath = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in searchPath.split(separator: ":") where !directory.isEmpty {
            let candidate = "\(directory)/\(wanted)"
            if access(candidate, X_OK) == 0 { return QEMUBinary(path: candidate) }
        }
        throw LookupError(description: "\(wanted) is not on PATH (\(searchPath)): \(install)")
    }

    /// What `PATH --version` says, e.g. 10.0.2 from "QEMU emulator version 10.0.2 (Debian ...)".
    public func version() throws(LookupError) -> QEMUVersion {
        let termination: ChildProcess.Termination
        let output: String
        do {
            (termination, output) = try ChildProcess.capture(executable: path, arguments: ["--version"])
        } catch {
            throw LookupError(description: "cannot run \(path) --version: \(error)")
        }
        guard termination.succeeded, let version = QEMUBinary.parseVersion(output) else {
            throw LookupError(description: "\(path) --version ended with \(termination) and printed no QEMU version: "
                + String(output.prefix(300)))
        }
        return version
    }

    /// The version in QEMU's `--version` text (its first line: "QEMU emulator version X.Y.Z ...").
    public static func parseVersion(_ text: String) -> QEMUVersion? {
        guard let match = text.firstMatch(of: /version (\d+)\.(\d+)(?:\.(\d+))?/),
              let major = Int(match.output.1), let minor = Int(match.output.2) else { return nil }
        return QEMUVersion(major: major, minor: minor, micro: match.output.3.flatMap { Int($0) } ?? 0)
    }
}
