#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import RdmigDeviceState
import RdmigQEMU
import RdmigSystem

/// `rdmig qemu-launch`: QEMU mode in one step. Starts a source QEMU and a destination QEMU
/// (`-incoming defer -S`) with a QMP socket each for rdmig, then runs `rdmig dest --qemu-qmp`
/// and `rdmig source --qemu-qmp` between them on loopback, prints their reports and stops the
/// QEMUs; or, with --no-migrate, leaves the QEMUs running and prints those two command lines.
struct QEMULaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qemu-launch",
        abstract: "Try QEMU mode in one step: start a source and a destination QEMU and migrate one to the other through rdmig.",
        discussion: """
            Both QEMUs get the same machine (RAM, vCPUs, kernel), a QMP socket for rdmig (qmp.sock) and one for \
            the launcher and you (control.sock), the serial console in serial.log, QEMU's own messages in \
            qemu.log, under --dir in src/ and dst/. The destination starts with -incoming defer -S.

            Then it runs `rdmig dest --qemu-qmp dst/qmp.sock --listen 127.0.0.1:PORT` and `rdmig source \
            --qemu-qmp src/qmp.sock --connect 127.0.0.1:PORT` (this same rdmig), prints their reports and quits \
            both QEMUs (QMP quit, SIGKILL after 5 s). With --keep the QEMU that runs the guest stays (the \
            destination after a completed migration, the source after a failed one) and the other is quit. Exit status 0 only when both services exit 0 \
            (and, with the test guest, its heartbeats on the destination show no lost page).

            With --no-migrate it only starts the QEMUs and prints the two rdmig command lines and how to stop \
            the QEMUs. On an error, Ctrl-C or SIGTERM the QEMUs it started are quit.

            The test guest (--guest test, the default) is the one Tests/qemu-guest/build-image.sh builds and \
            caches (found next to this rdmig's source tree, or in RDMIG_GUEST_SCRIPTS): it writes its working \
            set at --dirty-rate and counts pages that lost a write. QEMU: --qemu, else RDMIG_QEMU, else \
            qemu-system-x86_64 on PATH; KVM where kvm_intel/kvm_amd is loaded, else TCG; QEMU < 9.0 gets an \
            odd RAM size (it loses writes during migration under TCG otherwise).
            """)

    @Option(help: "Built-in guest: test (the default without --kernel).")
    var guest: String?

    @Option(help: "Boot this kernel instead (direct kernel boot: bzImage or a PVH vmlinux).")
    var kernel: String?

    @Option(help: "Initramfs for --kernel.")
    var initrd: String?

    @Option(help: "Kernel command line: with --kernel the whole of it (default: console=ttyS0); with the test guest, added to its own.")
    var append: String?

    @Option(help: "Guest RAM, a whole number of MiB, e.g. 256MiB.")
    var memory: String = "1GiB"

    @Option(help: "vCPUs.")
    var smp: Int = 1

    @Option(name: .customLong("working-set"), help: "Test guest: the memory it keeps writing, e.g. 64MiB (default: a quarter of --memory, at most 256MiB).")
    var workingSet: String?

    @Option(name: .customLong("dirty-rate"), help: "Test guest: how fast it writes, e.g. 50MB/s (default 50MB/s; 0: idle).")
    var dirtyRate: String?

    @Option(help: "QEMU binary (default: $RDMIG_QEMU, else qemu-system-x86_64 on PATH).")
    var qemu: String?

    @Option(name: .customLong("qemu-arg"), parsing: .unconditionalSingleValue,
            help: "Another argument for both QEMUs, repeatable, e.g. --qemu-arg -device --qemu-arg virtio-rng-pci.")
    var qemuArguments: [String] = []

    @Option(help: "Accelerator: auto, kvm or tcg (default: $RDMIG_QEMU_ACCEL, else auto: KVM where kvm_intel or kvm_amd is loaded).")
    var accel: String?

    @Option(help: "Run directory (default: $XDG_RUNTIME_DIR/rdmig/launch, else ${RDMIG_CACHE:-~/.cache/rdmig}/launch).")
    var dir: String?

    @Flag(name: .customLong("no-migrate"), help: "Only start the QEMUs and print the rdmig command lines that migrate between them.")
    var noMigrate = false

    @Flag(help: "Leave the QEMU that runs the guest after the migration running (its pid, QMP socket and serial console are printed); the other is quit.")
    var keep = false

    @Option(help: "Port rdmig dest listens on at 127.0.0.1 (default: any free one; with --no-migrate 7472).")
    var port: Int?

    @Option(name: .customLong("vf"), help: "rdmig source: a VF state provider, repeatable: ib-sw[:qps=N,...] or vfio:PATH.")
    var vf: [String] = []

    @Option(name: .customLong("downtime-limit"), help: "rdmig source: QEMU's downtime-limit, e.g. 300ms.")
    var downtimeLimit: String?

    @Option(name: .customLong("max-bandwidth"), help: "rdmig source: QEMU's max-bandwidth, e.g. 10GiB/s (default: measured).")
    var maxBandwidth: String?

    @Option(help: "Config file for both rdmig services (TOML; see conf/rdmig.toml).")
    var config: String?

    @Option(name: .customLong("key-file"), help: "Pre-shared key file for both rdmig services (default: theirs).")
    var keyFile: String?

    @Flag(help: "Print one JSON object on stdout: both services' reports, the QEMUs' states and how they were left.")
    var json = false

    @Flag(name: .shortAndLong, help: "Both rdmig services log every protocol step to stderr.")
    var verbose = false

    init() {}

    /// Checked flags, in the units the launch uses.
    struct Checked {
        var memory: ByteCount
        var workingSet: ByteCount
        var dirtyRate: ByteRate
        var testGuest: Bool
    }

    static let defaultDirtyRate = ByteRate(bytesPerSecond: 50_000_000)
    static let minimumMemory = ByteCount.mebibytes(32)

    func check() throws(ValidationError) -> Checked {
        if let guest {
            if kernel != nil { throw ValidationError("--guest \(guest) and --kernel: give one of them") }
            if guest != "test" {
                throw ValidationError("unknown guest '\(guest)': the built-in guest is 'test'; boot another with --kernel PATH --initrd PATH")
            }
        }
        if initrd != nil && kernel == nil { throw ValidationError("--initrd needs --kernel (the test guest brings its own)") }
        for (flag, path) in [("--kernel", kernel), ("--initrd", initrd), ("--config", config), ("--key-file", keyFile)] {
            guard let path else { continue }
            if access(path, F_OK) != 0 { throw ValidationError("\(flag) \(path): no such file") }
            if access(path, R_OK) != 0 { throw ValidationError("\(flag) \(path): not readable") }
        }
        let memory: ByteCount
        do {
            memory = try ByteCount(parsing: self.memory)
        } catch {
            throw ValidationError("--memory \(self.memory): \(error)")
        }
        let mebibyte = ByteCount.mebibytes(1).bytes
        if memory.bytes % mebibyte != 0 { throw ValidationError("--memory \(self.memory): give a whole number of MiB, e.g. 256MiB") }
        if memory < QEMULaunchCommand.minimumMemory {
            throw ValidationError("--memory \(self.memory): too small to boot a guest; give at least \(QEMULaunchCommand.minimumMemory)")
        }
        if !(1...255).contains(smp) { throw ValidationError("--smp \(smp): give 1 to 255 vCPUs") }
        let testGuest = kernel == nil
        if !testGuest {
            for (flag, value) in [("--working-set", workingSet), ("--dirty-rate", dirtyRate)] where value != nil {
                throw ValidationError("\(flag) sets the test guest's workload; with --kernel the guest is yours")
            }
        }
        var workingSetBytes = ByteCount.mebibytes(min(256, memory.bytes / mebibyte / 4))
        if let workingSet {
            do {
                workingSetBytes = try ByteCount(parsing: workingSet)
            } catch {
                throw ValidationError("--working-set \(workingSet): \(error)")
            }
            if workingSetBytes.bytes % mebibyte != 0 || workingSetBytes.bytes == 0 {
                throw ValidationError("--working-set \(workingSet): give a whole number of MiB, at least 1MiB")
            }
            if workingSetBytes >= memory {
                throw ValidationError("--working-set \(workingSet) does not fit in --memory \(self.memory): the guest's kernel needs some too")
            }
        }
        var rate = QEMULaunchCommand.defaultDirtyRate
        if let dirtyRate {
            do {
                rate = try ByteRate(parsing: dirtyRate)
            } catch {
                throw ValidationError("--dirty-rate \(dirtyRate): \(error)")
            }
        }
        if let accel, QEMUAccelerator(rawValue: accel) == nil, accel != "auto" {
            throw ValidationError("--accel \(accel): use auto, kvm or tcg")
        }
        if let port {
            if !(0...65535).contains(port) { throw ValidationError("--port \(port): give 0 to 65535") }
            if port == 0 && noMigrate { throw ValidationError("--port 0 with --no-migrate: give the port the printed command lines should use") }
        }
        if keep && noMigrate { throw ValidationError("--keep with --no-migrate: --no-migrate always leaves the QEMUs running") }
        if let downtimeLimit {
            do {
                _ = try DurationParser.parse(downtimeLimit)
            } catch {
                throw ValidationError("--downtime-limit \(downtimeLimit): \(error)")
            }
        }
        if let maxBandwidth {
            do {
                _ = try ByteRate(parsing: maxBandwidth)
            } catch {
                throw ValidationError("--max-bandwidth \(maxBandwidth): \(error)")
            }
        }
        for spec in vf {
            // Only the kind: making the provider (a VFIO device opened) is rdmig source's job.
            let kind = String(spec.prefix { $0 != ":" })
            if !DeviceStateProviders.kinds.contains(where: { $0.kind == kind }) {
                let known = DeviceStateProviders.kinds.map { "\($0.kind) (e.g. \($0.example))" }.joined(separator: ", ")
                throw ValidationError("--vf \(spec): unknown VF state provider '\(kind)': use \(known)")
            }
        }
        if let dir, dir.isEmpty { throw ValidationError("--dir: give a directory") }
        return Checked(memory: memory, workingSet: workingSetBytes, dirtyRate: rate, testGuest: testGuest)
    }

    func validate() throws {
        _ = try check()
    }

    func run() throws {
        let checked = try check()
        let environment = ProcessInfo.processInfo.environment
        let binary: QEMUBinary
        let version: QEMUVersion
        do {
            binary = try QEMUBinary.locate(qemu, environment: environment)
            version = try binary.version()
        } catch {
            throw RdmigCommandError("\(error)")
        }
        let accelerator = try QEMUAccelerator.choose(accel ?? environment["RDMIG_QEMU_ACCEL"])
        let rdmig = QEMULaunchCommand.ownExecutable()
        let directory = QEMULaunchCommand.absolute(dir ?? QEMULaunchCommand.defaultDirectory(environment: environment))
        try QEMULauncher.checkDirectory(directory)
        let kernelPath: String
        let initrdPath: String?
        let commandLine: String
        if checked.testGuest {
            guard let scripts = TestGuestImage.scriptsDirectory(
                environment: environment, executable: rdmig, currentDirectory: FileManager.default.currentDirectoryPath) else {
                throw RdmigCommandError(TestGuestImage.missingScriptsMessage(executable: rdmig))
            }
            FileHandle.standardError.write(Data("rdmig qemu-launch: test guest image: \(scripts)/\(TestGuestImage.scriptName)\n".utf8))
            let image = try TestGuestImage.build(scripts: scripts)
            kernelPath = image.kernel
            initrdPath = image.initrd
            commandLine = TestGuestImage.kernelCommandLine(
                workingSet: checked.workingSet, dirtyRate: checked.dirtyRate, heartbeatMilliseconds: 500, extra: append)
        } else {
            kernelPath = QEMULaunchCommand.absolute(kernel!)
            initrdPath = initrd.map(QEMULaunchCommand.absolute)
            commandLine = append ?? "console=ttyS0"
        }
        let machine = QEMUMachine(
            binary: binary, version: version, accelerator: accelerator, firmware: QEMUMachine.findFirmware(),
            memory: checked.memory, oddRAMSize: QEMUMachine.needsOddRAMSize(version: version, environment: environment),
            processors: smp, kernel: kernelPath, initrd: initrdPath, append: commandLine, extraArguments: qemuArguments)
        var shared: [String] = []
        if let config { shared += ["--config", QEMULaunchCommand.absolute(config)] }
        if let keyFile { shared += ["--key-file", QEMULaunchCommand.absolute(keyFile)] }
        if verbose { shared.append("-v") }
        var sourceOnly = vf.flatMap { ["--vf", $0] }
        if let downtimeLimit { sourceOnly += ["--downtime-limit", downtimeLimit] }
        if let maxBandwidth { sourceOnly += ["--max-bandwidth", maxBandwidth] }
        let settings = QEMULauncher.Settings(
            machine: machine, testGuest: checked.testGuest,
            directory: directory,
            migrate: !noMigrate, keep: keep, port: port.map { UInt16($0) }, rdmig: rdmig,
            sharedOptions: shared, sourceOptions: sourceOnly, json: json)
        let launcher = QEMULauncher(settings: settings)
        InterruptSignal.install()
        let status: Int32
        do {
            status = try waitForAsync { try await launcher.run() }
        } catch let interrupt as InterruptSignal.Received {
            FileHandle.standardError.write(Data("rdmig qemu-launch: \(interrupt)\n".utf8))
            throw ExitCode(128 + interrupt.signal)
        }
        if status != 0 { throw ExitCode(status) }
    }

    static func defaultDirectory(environment: [String: String]) -> String {
        if let runtime = environment["XDG_RUNTIME_DIR"], !runtime.isEmpty { return runtime + "/rdmig/launch" }
        if let cache = environment["RDMIG_CACHE"], !cache.isEmpty { return cache + "/launch" }
        return (environment["HOME"] ?? NSHomeDirectory()) + "/.cache/rdmig/launch"
    }

    /// This rdmig, to start its `dest` and `source` as children.
    static func ownExecutable() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return absolute(CommandLine.arguments[0])
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
    }
}
