#if canImport(Glibc)
import Glibc
#endif
import RdmigQEMU
import RdmigSystem

/// What `rdmig qemu-launch` starts twice, as a source and as a destination: the same QEMU,
/// accelerator, RAM, vCPUs and direct kernel boot (QEMU needs the same machine on both sides
/// of a migration).
struct QEMUMachine: Sendable {
    var binary: QEMUBinary
    var version: QEMUVersion
    var accelerator: QEMUAccelerator
    /// qboot's ROM when installed: it skips SeaBIOS's option-ROM and boot-device scans, so a
    /// direct -kernel boot starts sooner under TCG (Tests/qemu-guest/qemu-lib.sh).
    var firmware: String?
    var memory: ByteCount
    /// The odd-RAM-size workaround (see `needsOddRAMSize`).
    var oddRAMSize: Bool
    var processors: Int
    var kernel: String
    var initrd: String?
    var append: String
    var extraArguments: [String]

    /// QEMU before 9.0 loses pages written during migration under TCG (fixed upstream by
    /// 03bfc2188f, "Fix migration dirty bitmap coherency with TCG memory access"). A RAM size
    /// that is not a multiple of the dirty-bitmap word (1 GiB + 8 KiB) takes a slower sync path
    /// that does not lose writes (measured, FACTS.md). RDMIG_QEMU_ODD_RAM=0|1 forces it, as
    /// for the test scripts.
    static func needsOddRAMSize(version: QEMUVersion, environment: [String: String]) -> Bool {
        switch environment["RDMIG_QEMU_ODD_RAM"] {
        case "1": return true
        case "0": return false
        default: return version.major < 9
        }
    }

    static let firmwareDirectories = ["/usr/share/qemu", "/usr/share/qboot", "/usr/lib/qemu"]

    static func findFirmware(in directories: [String] = firmwareDirectories) -> String? {
        directories.map { $0 + "/qboot.rom" }.first { access($0, R_OK) == 0 }
    }

    /// `-m`: whole MiB, or KiB + 8 with the workaround.
    var memoryArgument: String {
        oddRAMSize ? "\(memory.bytes / 1024 + 8)K" : "\(memory.bytes >> 20)M"
    }

    /// The full command line (without the binary) for one side.
    func arguments(name: String, paths: QEMURunPaths, incoming: Bool) -> [String] {
        var arguments = ["-name", name] + accelerator.arguments
        if let firmware { arguments += ["-bios", firmware] }
        arguments += [
            "-m", memoryArgument, "-smp", "\(processors)",
            "-nodefaults", "-display", "none", "-vga", "none", "-nic", "none", "-no-reboot",
            "-kernel", kernel,
        ]
        if let initrd { arguments += ["-initrd", initrd] }
        arguments += [
            "-append", append,
            "-serial", "file:\(paths.serial)",
            "-qmp", "unix:\(paths.rdmigQMP),server=on,wait=off",
            "-qmp", "unix:\(paths.controlQMP),server=on,wait=off",
            "-pidfile", paths.pidFile,
        ]
        // The destination waits for the stream (migrate-incoming, which rdmig dest sends) and
        // stays paused until rdmig dest says `cont`.
        if incoming { arguments += ["-incoming", "defer", "-S"] }
        return arguments + extraArguments
    }
}
