#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import RdmigQEMU
import RdmigSystem
import RdmigTestSupport
import Testing
@testable import RdmigService

/// `rdmig qemu-launch`'s flags, checked before any QEMU starts (no QEMU needed).
@Suite struct QEMULaunchFlags {
    /// The message and exit code rdmig gives for `rdmig qemu-launch ARGUMENTS` when parsing or
    /// checking them fails (nothing is run).
    func refusal(_ arguments: [String]) throws -> (message: String, exitCode: Int32) {
        do {
            _ = try RdmigCommand.parseAsRoot(["qemu-launch"] + arguments)
        } catch {
            return (RdmigCommand.message(for: error), RdmigCommand.exitCode(for: error).rawValue)
        }
        throw ProcessFailure("rdmig qemu-launch \(arguments) was accepted")
    }

    @Test func aMissingKernelFileIsRefusedWithItsPath() throws {
        let (message, code) = try refusal(["--kernel", "/nonexistent/vmlinuz", "--initrd", "/nonexistent/initrd"])
        #expect(message.contains("--kernel /nonexistent/vmlinuz: no such file"), "\(message)")
        #expect(code == ExitCode.validationFailure.rawValue)
    }

    @Test func anInitrdWithoutAKernelIsRefused() throws {
        let initrd = try temporaryKeyFile()  // any readable file
        #expect(try refusal(["--initrd", initrd]).message.contains("--initrd needs --kernel"))
    }

    @Test func badMemorySizesAreRefusedWithWhatIsWrong() throws {
        #expect(try refusal(["--memory", "lots"]).message.contains("--memory lots: 'lots' is not a size"))
        #expect(try refusal(["--memory", "1GiBs"]).message.contains("unknown unit 'GiBs'"))
        #expect(try refusal(["--memory", "1000KiB"]).message.contains("whole number of MiB"))
        #expect(try refusal(["--memory", "16MiB"]).message.contains("too small"))
        #expect(try refusal(["--memory", "256MiB", "--working-set", "256MiB"]).message.contains("does not fit in --memory 256MiB"))
    }

    @Test func anUnknownGuestIsRefusedAndTheAlternativesNamed() throws {
        let message = try refusal(["--guest", "windows"]).message
        #expect(message.contains("unknown guest 'windows'"), "\(message)")
        #expect(message.contains("--kernel PATH --initrd PATH"))
    }

    @Test func aGuestAndAKernelTogetherAreRefused() throws {
        let kernel = try temporaryKeyFile()
        #expect(try refusal(["--guest", "test", "--kernel", kernel]).message.contains("give one of them"))
        #expect(try refusal(["--kernel", kernel, "--dirty-rate", "10MB/s"]).message.contains("with --kernel the guest is yours"))
    }

    @Test func otherBadFlagsAreRefusedBeforeAnythingStarts() throws {
        #expect(try refusal(["--smp", "0"]).message.contains("--smp 0"))
        #expect(try refusal(["--accel", "hvf"]).message.contains("use auto, kvm or tcg"))
        #expect(try refusal(["--vf", "nonsense:1"]).message.contains("unknown VF state provider 'nonsense'"))
        #expect(try refusal(["--downtime-limit", "soon"]).message.contains("--downtime-limit soon"))
        #expect(try refusal(["--max-bandwidth", "fast"]).message.contains("--max-bandwidth fast"))
        #expect(try refusal(["--keep", "--no-migrate"]).message.contains("always leaves the QEMUs running"))
        #expect(try refusal(["--no-migrate", "--port", "0"]).message.contains("--port 0 with --no-migrate"))
        #expect(try refusal(["--config", "/nonexistent.toml"]).message.contains("--config /nonexistent.toml: no such file"))
    }

    /// Through the real binary: a QEMU that is not there is named, with how to get one, and
    /// nothing is created in the run directory.
    @Test func aMissingQEMUBinaryIsNamedAndNothingStarts() throws {
        let directory = NSTemporaryDirectory() + "rdmig-launch-noqemu-\(getpid())"
        let launch = try RdmigProcess(["qemu-launch", "--qemu", "/nonexistent/qemu-system-x86_64", "--dir", directory])
        let status = launch.wait(timeout: 30)
        #expect(status == 1)
        #expect(launch.stderr.contains("QEMU binary /nonexistent/qemu-system-x86_64 does not exist"), "\(launch.stderr)")
        #expect(launch.stderr.contains("install-qemu.sh"))
        #expect(!FileManager.default.fileExists(atPath: directory))
    }
}

/// The choices `rdmig qemu-launch` makes for QEMU, the same as Tests/qemu-guest/qemu-lib.sh's.
@Suite struct QEMULaunchChoices {
    func machine(version: QEMUVersion = QEMUVersion(major: 10, minor: 0, micro: 2), oddRAMSize: Bool = false) -> QEMUMachine {
        QEMUMachine(
            binary: QEMUBinary(path: "/usr/bin/qemu-system-x86_64"), version: version, accelerator: .tcg,
            firmware: "/usr/share/qemu/qboot.rom", memory: .mebibytes(256), oddRAMSize: oddRAMSize, processors: 2,
            kernel: "/k/vmlinux", initrd: "/k/initrd", append: "console=ttyS0", extraArguments: ["-device", "virtio-rng-pci"])
    }

    func value(after flag: String, in arguments: [String]) -> String? {
        arguments.firstIndex(of: flag).map { arguments[$0 + 1] }
    }

    @Test func theDestinationWaitsForTheStreamPausedAndTheSourceRuns() {
        let paths = QEMURunPaths(directory: "/run/x/dst")
        let destination = machine().arguments(name: "rdmig-dst", paths: paths, incoming: true)
        let source = machine().arguments(name: "rdmig-src", paths: QEMURunPaths(directory: "/run/x/src"), incoming: false)
        #expect(value(after: "-incoming", in: destination) == "defer")
        #expect(destination.contains("-S"))
        #expect(!source.contains("-incoming") && !source.contains("-S"))
        // One QMP socket for rdmig, one for the launcher; serial to a file; no reboot.
        let qmp = destination.indices.filter { destination[$0] == "-qmp" }.map { destination[$0 + 1] }
        #expect(qmp == ["unix:/run/x/dst/qmp.sock,server=on,wait=off", "unix:/run/x/dst/control.sock,server=on,wait=off"])
        #expect(value(after: "-serial", in: destination) == "file:/run/x/dst/serial.log")
        for flag in ["-nodefaults", "-no-reboot"] { #expect(destination.contains(flag)) }
        #expect(value(after: "-display", in: destination) == "none")
        #expect(value(after: "-smp", in: destination) == "2")
        #expect(value(after: "-bios", in: destination) == "/usr/share/qemu/qboot.rom")
        #expect(Array(destination.suffix(2)) == ["-device", "virtio-rng-pci"])
        #expect(value(after: "-accel", in: source) == "tcg,thread=multi")
    }

    @Test func qemuBefore9GetsTheOddRAMSize() {
        let old = QEMUVersion(major: 7, minor: 2, micro: 22)
        #expect(QEMUMachine.needsOddRAMSize(version: old, environment: [:]))
        #expect(!QEMUMachine.needsOddRAMSize(version: QEMUVersion(major: 9, minor: 0, micro: 0), environment: [:]))
        #expect(!QEMUMachine.needsOddRAMSize(version: old, environment: ["RDMIG_QEMU_ODD_RAM": "0"]))
        #expect(machine(oddRAMSize: true).memoryArgument == "262152K")  // 256 MiB + 8 KiB
        #expect(machine().memoryArgument == "256M")
    }

    @Test func kvmOnlyWhereItIsHardwareVirtualisation() throws {
        #expect(try QEMUAccelerator.choose(nil, kvmUsable: false) == .tcg)
        #expect(try QEMUAccelerator.choose("auto", kvmUsable: true) == .kvm)
        #expect(try QEMUAccelerator.choose("tcg", kvmUsable: true) == .tcg)
        #expect(throws: RdmigCommandError.self) { try QEMUAccelerator.choose("hvf", kvmUsable: true) }
        // /dev/kvm alone (a PVM host) is not enough: kvm_intel or kvm_amd must be loaded.
        let root = NSTemporaryDirectory() + "rdmig-kvm-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/dev", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/sys/module/kvm_pvm", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: root + "/dev/kvm", contents: Data()))
        #expect(!QEMUAccelerator.kvmUsable(root: root))
        try FileManager.default.createDirectory(atPath: root + "/sys/module/kvm_amd", withIntermediateDirectories: true)
        #expect(QEMUAccelerator.kvmUsable(root: root))
    }

    @Test func theQEMUBinaryComesFromTheFlagTheEnvironmentOrPath() throws {
        let directory = NSTemporaryDirectory() + "rdmig-qemu-bin-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: directory + "/qemu-system-x86_64", contents: Data(), attributes: [.posixPermissions: 0o755]))
        #expect(FileManager.default.createFile(atPath: directory + "/my-qemu", contents: Data(), attributes: [.posixPermissions: 0o755]))
        #expect(try QEMUBinary.locate(environment: ["PATH": "/nonexistent:\(directory)"]).path == directory + "/qemu-system-x86_64")
        #expect(try QEMUBinary.locate(environment: ["PATH": directory, "RDMIG_QEMU": "my-qemu"]).path == directory + "/my-qemu")
        #expect(try QEMUBinary.locate(directory + "/my-qemu", environment: [:]).path == directory + "/my-qemu")
        #expect(throws: QEMUBinary.LookupError.self) { try QEMUBinary.locate(environment: ["PATH": "/nonexistent"]) }
        #expect(QEMUBinary.parseVersion("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright")
            == QEMUVersion(major: 10, minor: 0, micro: 2))
        #expect(QEMUBinary.parseVersion("QEMU emulator version 7.2") == QEMUVersion(major: 7, minor: 2, micro: 0))
        #expect(QEMUBinary.parseVersion("not qemu") == nil)
    }

    @Test func theTestGuestImageIsFoundInTheSourceTreeAndReadFromBuildImage() throws {
        let tree = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let executable = tree + "/.build/x86_64-unknown-linux-gnu/debug/rdmig"
        #expect(TestGuestImage.scriptsDirectory(environment: [:], executable: executable, currentDirectory: "/") == tree + "/Tests/qemu-guest")
        #expect(TestGuestImage.scriptsDirectory(environment: [:], executable: "/usr/bin/rdmig", currentDirectory: "/nonexistent") == nil)
        #expect(TestGuestImage.scriptsDirectory(environment: ["RDMIG_GUEST_SCRIPTS": "/x"], executable: executable, currentDirectory: "/") == "/x")
        let output = "rdmig guest image: up to date\nRDMIG_GUEST_KERNEL=/c/vmlinux\nRDMIG_GUEST_VMLINUZ=/c/vmlinuz\nRDMIG_GUEST_INITRD=/c/initramfs.cpio\n"
        #expect(TestGuestImage.parse(output) == TestGuestImage(kernel: "/c/vmlinux", initrd: "/c/initramfs.cpio"))
        #expect(TestGuestImage.parse("RDMIG_GUEST_KERNEL=/c/vmlinux\n") == nil)
        let line = TestGuestImage.kernelCommandLine(
            workingSet: .mebibytes(64), dirtyRate: ByteRate(bytesPerSecond: 20_000_000), heartbeatMilliseconds: 500, extra: "quiet")
        #expect(line == "console=ttyS0 panic=-1 rdmig.ws=64 rdmig.rate=20.000 rdmig.hb=500 rdmig.run=0 quiet")
    }

    @Test func printedCommandLinesSurviveTheShell() {
        #expect(ShellWords.join(["rdmig", "dest", "--qemu-qmp", "/run/a b/qmp.sock"]) == "rdmig dest --qemu-qmp '/run/a b/qmp.sock'")
        #expect(ShellWords.quote("it's") == #"'it'\''s'"#)
        #expect(ShellWords.quote("") == "''")
        #expect(LaunchedMigration.listeningPort(in: "x\nrdmig dest: listening on 127.0.0.1:40123 (tcp: no RDMA device found); QEMU") == 40123)
        #expect(LaunchedMigration.listeningPort(in: "rdmig dest: starting") == nil)
    }

    @Test func heartbeatsAreReadFromTheSerialConsole() {
        let serial = """
            [    1.7] Run /init as init process
            rdmig-guest: start ws=32MiB pages=8192 rate=10.0MB/s hb=500ms run=0s
            rdmig-guest: heartbeat n=1 written=1220 errors=0 t=0.500 rate=10.0
            rdmig-guest: heartbeat n=2 written=2441 errors=3 t=1.000 rate=10.0
            """
        #expect(TestGuestHeartbeat.parse(serial) == [
            TestGuestHeartbeat(n: 1, written: 1220, errors: 0), TestGuestHeartbeat(n: 2, written: 2441, errors: 3),
        ])
    }
}

/// `rdmig qemu-launch` for real: two QEMUs with the test guest under TCG, the migration
/// through rdmig, and nothing left running afterwards.
@Suite("rdmig qemu-launch (real QEMU)", .serialized,
       .enabled(if: QEMUTestGuest.qemuAvailable, "qemu-system-x86_64 is not installed (Tests/qemu-guest/install-qemu.sh)"))
struct QEMULaunchEndToEnd {
    /// A short directory: QMP socket paths must fit in 107 bytes.
    func runDirectory(_ test: String) -> String {
        "/tmp/rdmig-launch-\(getpid())-\(test)"
    }

    /// Processes whose command line names `directory` (QEMUs started there).
    func processes(in directory: String) -> [String] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> String? in
            guard let pid = Int32(entry), pid != getpid(),
                  let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let commandLine = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            guard commandLine.contains(directory + "/"), !commandLine.contains("qemu-launch") else { return nil }
            // A zombie has not been reaped yet but runs nothing.
            let stat = (try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8)) ?? ""
            if let close = stat.lastIndex(of: ")"), stat[close...].hasPrefix(") Z") { return nil }
            return "\(pid): \(commandLine)"
        }
    }

    /// A failed test must not leave QEMUs behind either.
    func killLeftovers(in directory: String) {
        for entry in processes(in: directory) {
            if let pid = Int32(entry.prefix { $0 != ":" }) { kill(pid, SIGKILL) }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Waits for the launcher's exit; SIGKILLs it (a failure) when it does not end in `timeout` s.
    func exitStatus(_ launch: RdmigProcess, timeout: Double) async throws -> Int32 {
        try await DedicatedThread.run(name: "test-wait") {
            let deadline = Date(timeIntervalSinceNow: timeout)
            while launch.process.isRunning && Date() < deadline { usleep(20_000) }
            if launch.process.isRunning {
                launch.kill()
                Issue.record("rdmig qemu-launch did not exit within \(Int(timeout)) s:\n\(launch.stderr)")
            }
            return launch.wait(timeout: 10)
        }
    }

    @Test func oneCommandMigratesTheTestGuestThroughRdmigAndStopsBothQEMUs() async throws {
        let directory = runDirectory("e2e")
        defer { killLeftovers(in: directory) }
        let key = try temporaryKeyFile()
        let started = ContinuousClock.now
        let launch = try RdmigProcess([
            "qemu-launch", "--memory", "256MiB", "--working-set", "32MiB", "--dirty-rate", "10MB/s",
            "--dir", directory, "--key-file", key, "--json",
        ])
        let status = try await exitStatus(launch, timeout: 120)
        #expect(status == 0, "rdmig qemu-launch exited \(status):\n\(launch.stderr)")
        let result = try launch.report()
        #expect(result["status"] as? String == "completed", "\(result)")
        let source = result["source"] as? [String: Any]
        let destination = result["dest"] as? [String: Any]
        #expect(source?["status"] as? String == "completed")
        #expect(destination?["status"] as? String == "completed")
        #expect((source?["qemu"] as? [String: Any])?["status"] as? String == "completed")
        // The QEMUs' own states after the migration, then both quit.
        let qemu = result["qemu"] as? [String: [String: Any]]
        #expect(qemu?["source"]?["state-after-migration"] as? String == "postmigrate")
        #expect(qemu?["destination"]?["state-after-migration"] as? String == "running")
        #expect(qemu?["source"]?["stop"] as? String == "quit")
        #expect(qemu?["destination"]?["stop"] as? String == "quit")
        // The guest went on on the destination without losing a write.
        let check = result["guest-check"] as? [String: Any]
        #expect(check?["page-errors"] as? Int == 0, "\(String(describing: check))")
        #expect((check?["destination-heartbeats"] as? Int ?? 0) >= QEMULauncher.destinationHeartbeats)
        #expect(processes(in: directory).isEmpty, "left running: \(processes(in: directory))")
        print("rdmig qemu-launch end to end: \(ContinuousClock.now - started), QEMU downtime "
            + "\((source?["qemu"] as? [String: Any])?["downtime-milliseconds"] ?? "?") ms")
    }

    @Test func aQEMUThatCannotStartIsReportedWithItsLogAndNothingIsLeft() async throws {
        let directory = runDirectory("bad")
        defer { killLeftovers(in: directory) }
        let launch = try RdmigProcess(["qemu-launch", "--memory", "256MiB", "--dir", directory, "--qemu-arg=-no-such-option"])
        let status = try await exitStatus(launch, timeout: 60)
        #expect(status == 1)
        #expect(launch.stderr.contains("the source QEMU did not start"), "\(launch.stderr)")
        #expect(launch.stderr.contains("-no-such-option: invalid option"), "QEMU's own message is shown:\n\(launch.stderr)")
        #expect(processes(in: directory).isEmpty, "left running: \(processes(in: directory))")
    }

    /// A migration held back (max-bandwidth far below the guest's dirty rate) is interrupted:
    /// the launcher ends both rdmig services, quits both QEMUs and exits 128 + SIGTERM.
    @Test func sigtermStopsTheServicesAndTheQEMUsItStarted() async throws {
        let directory = runDirectory("term")
        defer { killLeftovers(in: directory) }
        let key = try temporaryKeyFile()
        let launch = try RdmigProcess([
            "qemu-launch", "--memory", "256MiB", "--working-set", "32MiB", "--dirty-rate", "20MB/s",
            "--max-bandwidth", "4MiB/s", "--dir", directory, "--key-file", key,
        ])
        _ = try await DedicatedThread.run(name: "test-wait") { try launch.waitForLine(containing: "rdmig dest: listening on") }
        try await Task.sleep(for: .seconds(1))
        // Two QEMUs and both rdmig services, mid-migration.
        #expect(processes(in: directory).count == 4, "\(processes(in: directory))")
        launch.process.terminate()
        let status = try await exitStatus(launch, timeout: 30)
        #expect(status == 128 + SIGTERM, "\(launch.stderr)")
        #expect(launch.stderr.contains("stopped the QEMUs it started"), "\(launch.stderr)")
        #expect(processes(in: directory).isEmpty, "left running: \(processes(in: directory))")
    }
}
