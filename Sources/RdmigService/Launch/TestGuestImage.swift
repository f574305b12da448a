#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// The self-checking test guest of Tests/qemu-guest (Debian's kernel and an initramfs whose
/// /init fills a working set, dirties it at a given rate and counts pages that lost a write):
/// `build-image.sh` builds it into the cache (~8 s cold, ~0.03 s when up to date) and prints
/// where the kernel and initramfs are.
struct TestGuestImage: Sendable, Equatable {
    let kernel: String
    let initrd: String

    static let scriptName = "build-image.sh"

    /// Where Tests/qemu-guest is: `RDMIG_GUEST_SCRIPTS`, else the source tree the running
    /// `rdmig` was built in (it lives in .build/<config>/ of the checkout), else the current
    /// directory's. nil when none has build-image.sh.
    static func scriptsDirectory(environment: [String: String], executable: String, currentDirectory: String) -> String? {
        if let explicit = environment["RDMIG_GUEST_SCRIPTS"], !explicit.isEmpty {
            return explicit
        }
        var candidates: [String] = []
        var directory = executable
        while let slash = directory.lastIndex(of: "/"), slash != directory.startIndex {
            directory = String(directory[..<slash])
            candidates.append(directory + "/Tests/qemu-guest")
        }
        candidates.append(currentDirectory + "/Tests/qemu-guest")
        return candidates.first { access($0 + "/" + scriptName, R_OK) == 0 }
    }

    /// Why there is no test guest, and what to do instead.
    static func missingScriptsMessage(executable: String) -> String {
        "--guest test needs Tests/qemu-guest/\(scriptName) from rdmig's source tree to build its image, and found "
            + "none above \(executable) nor in the current directory: run rdmig from its checkout, set "
            + "RDMIG_GUEST_SCRIPTS=/path/to/rdmig/Tests/qemu-guest, or boot your own guest with --kernel PATH --initrd PATH"
    }

    /// Runs build-image.sh (blocking: a cold build downloads Debian's kernel package).
    static func build(scripts: String) throws(RdmigCommandError) -> TestGuestImage {
        let script = scripts + "/" + scriptName
        let termination: ChildProcess.Termination
        let output: String
        do {
            (termination, output) = try ChildProcess.capture(executable: "/bin/bash", arguments: [script])
        } catch {
            throw RdmigCommandError("cannot run \(script): \(error)")
        }
        guard termination.succeeded else {
            throw RdmigCommandError("\(script) failed (\(termination)) building the test guest:\n\(output)\n"
                + "Fix what it says (it needs Debian's apt sources, gcc, libc6-dev and python3), or boot your own guest with --kernel PATH --initrd PATH")
        }
        guard let image = parse(output) else {
            throw RdmigCommandError("\(script) printed no RDMIG_GUEST_KERNEL and RDMIG_GUEST_INITRD:\n\(output)")
        }
        return image
    }

    /// The image from build-image.sh's `RDMIG_GUEST_KERNEL=...` / `RDMIG_GUEST_INITRD=...` lines.
    static func parse(_ output: String) -> TestGuestImage? {
        var values: [Substring: String] = [:]
        for line in output.split(separator: "\n") {
            guard line.hasPrefix("RDMIG_GUEST_"), let equals = line.firstIndex(of: "=") else { continue }
            values[line[..<equals]] = String(line[line.index(after: equals)...])
        }
        guard let kernel = values["RDMIG_GUEST_KERNEL"], let initrd = values["RDMIG_GUEST_INITRD"] else { return nil }
        return TestGuestImage(kernel: kernel, initrd: initrd)
    }

    /// The guest's kernel command line (init.c's parameters: working set in MiB, dirty rate in
    /// MB/s of 10^6 bytes, heartbeat in ms). `panic=-1` with QEMU's -no-reboot makes a guest
    /// that panics exit QEMU instead of hanging.
    static func kernelCommandLine(workingSet: ByteCount, dirtyRate: ByteRate, heartbeatMilliseconds: Int, extra: String?) -> String {
        let rate = formatFixed(Double(dirtyRate.bytesPerSecond) / 1e6, decimals: 3)
        var line = "console=ttyS0 panic=-1 rdmig.ws=\(workingSet.bytes >> 20) rdmig.rate=\(rate) "
            + "rdmig.hb=\(heartbeatMilliseconds) rdmig.run=0"
        if let extra, !extra.isEmpty { line += " " + extra }
        return line
    }
}
