#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import RdmigMigration

@Suite struct ProgressReporterTests {
    func progress(_ iteration: Int) -> MigrationProgress {
        MigrationProgress(
            phase: .precopy, iteration: iteration, elapsed: .milliseconds(2100), transferred: 1 << 30,
            guestBytes: 1 << 30, remainingDirtyBytes: 12 << 20, bandwidth: Double(1 << 30),
            dirtyRate: Double(256 << 20), throttlePercent: 20)
    }

    /// Runs `body` with the write end of a pipe and returns what it wrote.
    func captured(_ body: (Int32) -> Void) -> String {
        var ends: [Int32] = [0, 0]
        precondition(pipe(&ends) == 0)
        body(ends[1])
        close(ends[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(ends[0], &buffer, buffer.count)
            if count <= 0 { break }
            output += buffer[..<count]
        }
        close(ends[0])
        return String(decoding: output, as: UTF8.self)
    }

    @Test func aPipeGetsPlainLinesAtMostOncePerInterval() {
        let text = captured { fd in
            let reporter = ProgressReporter(fileDescriptor: fd, plainInterval: .seconds(60))
            #expect(!reporter.isTerminal)
            reporter.update(progress(1))
            reporter.update(progress(2))            // within the interval: skipped
            reporter.update(progress(3), force: true)
            reporter.finish("completed")
        }
        #expect(text == progress(1).line + "\n" + progress(3).line + "\ncompleted\n")
        #expect(!text.contains("\r"))
    }

    @Test func aTerminalGetsOneLineRedrawnInPlace() {
        let text = captured { fd in
            let reporter = ProgressReporter(fileDescriptor: fd, isTerminal: true)
            reporter.update(progress(1))
            reporter.update(progress(2))
            reporter.finish("done")
        }
        #expect(text == "\r" + progress(1).line + "\u{1B}[K\r" + progress(2).line + "\u{1B}[K\ndone\n")
    }

    @Test func terminalsAreDetectedWithIsatty() throws {
        // A pseudo-terminal pair: TIOCSPTLCK unlocks the slave, TIOCGPTN names it
        // (include/uapi/asm-generic/ioctls.h; glibc's posix_openpt family is hidden from Swift).
        let master = open("/dev/ptmx", O_RDWR | O_NOCTTY)
        try #require(master >= 0)
        defer { close(master) }
        var unlock: Int32 = 0
        #expect(ioctl(master, UInt(0x4004_5431), &unlock) == 0)
        var number: UInt32 = 0
        #expect(ioctl(master, UInt(0x8004_5430), &number) == 0)
        let slave = open("/dev/pts/\(number)", O_RDWR | O_NOCTTY)
        try #require(slave >= 0)
        defer { close(slave) }
        #expect(ProgressReporter(fileDescriptor: slave).isTerminal)
        let text = captured { fd in #expect(!ProgressReporter(fileDescriptor: fd).isTerminal) }
        #expect(text.isEmpty)
    }

    @Test func theLineShowsTheFiguresWithUnits() {
        #expect(progress(3).line
            == "pre-copy  pass 3  1.00 GiB sent of 1.00 GiB guest  12.00 MiB dirty  1.00 GiB/s  dirty 256.00 MiB/s  throttle 20%  2.1 s")
    }
}
