/// The files of one QEMU that `rdmig qemu-launch` starts, in its run directory's `src/` or `dst/`.
struct QEMURunPaths: Sendable, Equatable {
    let directory: String

    /// The QMP socket for `rdmig source|dest --qemu-qmp`.
    var rdmigQMP: String { directory + "/qmp.sock" }
    /// A second QMP socket for the launcher's own status checks and `quit`, and for a person
    /// afterwards: a QMP socket serves one client at a time (FACTS.md).
    var controlQMP: String { directory + "/control.sock" }
    var serial: String { directory + "/serial.log" }
    /// QEMU's stdout and stderr.
    var log: String { directory + "/qemu.log" }
    var pidFile: String { directory + "/qemu.pid" }
    /// The command line, shell-quoted, to rerun it by hand.
    var commandLine: String { directory + "/command-line" }

    /// Everything a launch writes here, removed before the next launch in the same directory.
    var files: [String] { [rdmigQMP, controlQMP, serial, log, pidFile, commandLine] }

    /// sun_path holds 108 bytes with the terminating NUL (<sys/un.h>).
    static let socketPathLimit = 107

    var socketPathsFit: Bool {
        [rdmigQMP, controlQMP].allSatisfy { $0.utf8.count <= QEMURunPaths.socketPathLimit }
    }
}
