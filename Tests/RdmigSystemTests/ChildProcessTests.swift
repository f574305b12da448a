#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import RdmigSystem

@Suite struct ChildProcesses {
    @Test func captureReturnsStdoutAndStderrAndTheExitStatus() throws {
        let (ending, output) = try ChildProcess.capture(executable: "/bin/sh", arguments: ["-c", "echo out; echo err >&2; exit 3"])
        #expect(ending == .exited(3))
        #expect(!ending.succeeded)
        #expect(output == "out\nerr\n")
    }

    @Test func aChildEndedByASignalSaysWhich() async throws {
        let child = try ChildProcess(executable: "/bin/sleep", arguments: ["30"])
        #expect(child.poll() == nil)
        child.signal(SIGKILL)
        let ending = await child.wait(timeout: .seconds(10))
        #expect(ending == .signalled(SIGKILL))
        #expect(ending?.shellStatus == 137)
        #expect(ending?.description == "killed by signal 9 (SIGKILL)")
        // Reaped once, the same answer after.
        #expect(child.poll() == .signalled(SIGKILL))
    }

    /// A long-lived child (a QEMU left running) must not hold a pipe its parent's parent reads.
    @Test func descriptorsWithoutCloseOnExecAreNotInherited() throws {
        var ends: [Int32] = [-1, -1]
        try SystemCall.check("pipe") { pipe(&ends) }
        defer { ends.forEach { close($0) } }
        #expect(ChildProcess.inheritableDescriptors().contains(ends[1]))
        let (ending, output) = try ChildProcess.capture(executable: "/bin/sh", arguments: ["-c", "ls /proc/$$/fd"])
        #expect(ending.succeeded)
        let inherited = output.split(separator: "\n").compactMap { Int32($0) }
        #expect(inherited.contains(1))
        #expect(!inherited.contains(ends[0]) && !inherited.contains(ends[1]), "the child had \(inherited)")
    }

    @Test func aChildCanGetAProcessGroupOfItsOwn() async throws {
        let child = try ChildProcess(executable: "/bin/sleep", arguments: ["30"], newProcessGroup: true)
        defer {
            child.signal(SIGKILL)
            _ = child.waitUntilExit()
        }
        #expect(getpgid(child.pid) == child.pid)
        #expect(getpgid(child.pid) != getpgrp())
    }

    @Test func aMissingExecutableIsAnErrorNamingIt() {
        #expect(throws: SystemCallError.self) {
            try ChildProcess(executable: "/nonexistent/program", arguments: [])
        }
    }
}
