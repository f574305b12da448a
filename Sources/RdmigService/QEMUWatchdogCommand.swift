#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Logging
import RdmigQEMUMode

/// `rdmig qemu-watchdog`: started by `rdmig source --qemu-qmp` with a pipe as stdin; puts the
/// source QEMU back if the service dies without releasing it (QEMUWatchdogProcess). Not for
/// direct use.
struct QEMUWatchdogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "qemu-watchdog",
        abstract: "Restores the source QEMU if `rdmig source --qemu-qmp` dies (started by it).",
        shouldDisplay: false)

    func run() throws {
        // The service's end is the pipe's end, never a signal: SIGTERM to the whole service
        // (systemd stops every process of a unit) or SIGHUP of a closed terminal must not
        // take the watchdog first while the service may still need it.
        for signal in [SIGINT, SIGTERM, SIGHUP] { _ = Glibc.signal(signal, SIG_IGN) }
        var logger = Logger(label: "rdmig.qemu-watchdog") { label in StreamLogHandler.standardError(label: label) }
        logger.logLevel = .info
        let watchdog = QEMUWatchdogProcess(logger: logger)
        let status = waitForAsync { await watchdog.run() }
        if status != 0 { throw ExitCode(status) }
    }
}
