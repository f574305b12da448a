#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import RdmigQEMU
@testable import RdmigQEMUMode
import RdmigSystem
import Testing

/// The watchdog's decision and its pipe protocol, without QEMU.
@Suite("QEMU watchdog: decisions and the service's pipe (no QEMU needed)")
struct QEMUWatchdogLogicTests {
    typealias Decision = QEMUSourceRecovery.Decision

    static let plan = QEMUSourceRecovery.Plan(
        qmpPath: "/run/vm 1/qmp.sock",
        settings: QEMUMigrationSettings(capabilities: ["events": false, "pause-before-switchover": false],
                                        parameters: ["max-bandwidth": 134217728, "downtime-limit": 300]),
        guestWasRunning: true, fdName: "rdmig-migration")

    @Test func beforeMigrateContinueAMigrationUnderWayIsCancelledAndTheGuestResumed() {
        for status in [QEMUMigrationStatus.setup, .active, .preSwitchover, .cancelling] {
            #expect(QEMUSourceRecovery.decide(status: status, continuing: false) == .cancelAndResume, "\(status)")
        }
    }

    @Test func afterMigrateContinueTheWatchdogKeepsItsHandsOffUnlessQEMUNeverLeftPreSwitchover() {
        #expect(QEMUSourceRecovery.decide(status: .device, continuing: true) == .handsOff)
        #expect(QEMUSourceRecovery.decide(status: .active, continuing: true) == .handsOff)
        #expect(QEMUSourceRecovery.decide(status: .failed, continuing: true) == .handsOff)
        #expect(QEMUSourceRecovery.decide(status: .cancelled, continuing: true) == .handsOff)
        // Still waiting: migrate-continue was never executed, so the stream's end was never written.
        #expect(QEMUSourceRecovery.decide(status: .preSwitchover, continuing: true) == .cancelAndResume)
    }

    @Test func aCompletedMigrationIsNeverUndoneWhateverTheServiceSaid() {
        #expect(QEMUSourceRecovery.decide(status: .completed, continuing: false) == .handsOff)
        #expect(QEMUSourceRecovery.decide(status: .completed, continuing: true) == .handsOff)
    }

    @Test func anEndedOrNeverStartedMigrationOnlyNeedsTheGuestAndTheSettingsBack() {
        #expect(QEMUSourceRecovery.decide(status: .failed, continuing: false) == .resumeIfPaused)
        #expect(QEMUSourceRecovery.decide(status: .cancelled, continuing: false) == .resumeIfPaused)
        #expect(QEMUSourceRecovery.decide(status: QEMUMigrationStatus.none, continuing: false) == .settingsOnly)
        #expect(QEMUSourceRecovery.decide(status: nil, continuing: false) == .settingsOnly)
    }

    @Test func everyPipeMessageReadsBackAsItWasWritten() {
        let messages: [QEMUWatchdogMessage] = [.arm(Self.plan, preSwitchoverLimit: .milliseconds(3000)), .preSwitchover, .continuing, .release]
        for message in messages {
            let line = message.line
            #expect(line.hasSuffix("\n") && line.dropLast().allSatisfy { $0 != "\n" }, "one line: \(line)")
            #expect(QEMUWatchdogMessage(line: Array(line.utf8.dropLast())) == message, "\(line)")
        }
        #expect(QEMUWatchdogMessage(line: Array(#"{"watchdog":"arm"}"#.utf8)) == nil)
        #expect(QEMUWatchdogMessage(line: Array("not json".utf8)) == nil)
    }

    /// The watch loop on a real pipe: `feed` writes lines, then the write end closes (or not).
    func watch(_ lines: [QEMUWatchdogMessage], closeAfter: Bool = true) throws -> QEMUWatchdogProcess.Ending {
        let (readEnd, writeEnd) = try PipeCalls.makePipe()
        defer { close(readEnd) }
        for message in lines {
            let bytes = Array(message.line.utf8)
            #expect(bytes.withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) } == bytes.count)
        }
        if closeAfter { close(writeEnd) }
        // A parent that is not this process's parent: the loop never kills anything here.
        let watchdog = QEMUWatchdogProcess(input: readEnd, parent: pid_t.max, logger: Logger(label: "test"))
        let ending = watchdog.watch()
        if !closeAfter { close(writeEnd) }
        return ending
    }

    @Test func releaseEndsTheWatchWithNothingToDo() throws {
        #expect(try watch([.arm(Self.plan, preSwitchoverLimit: .seconds(5)), .release], closeAfter: false) == .released)
    }

    @Test func thePipesEndBeforeArmingIsNoDeath() throws {
        #expect(try watch([]) == .released)
    }

    @Test func thePipesEndAfterArmingIsTheServicesDeathAndCarriesWhatItSaidLast() throws {
        #expect(try watch([.arm(Self.plan, preSwitchoverLimit: .seconds(5))])
            == .serviceDied(Self.plan, continuing: false, killedAtLimit: false))
        #expect(try watch([.arm(Self.plan, preSwitchoverLimit: .seconds(5)), .preSwitchover, .continuing])
            == .serviceDied(Self.plan, continuing: true, killedAtLimit: false))
    }

    @Test func aServiceThatOutstaysThePreSwitchoverLimitIsCaughtAtTheLimit() throws {
        let (readEnd, writeEnd) = try PipeCalls.makePipe()
        defer { close(readEnd) }
        for message in [QEMUWatchdogMessage.arm(Self.plan, preSwitchoverLimit: .milliseconds(200)), .preSwitchover] {
            let bytes = Array(message.line.utf8)
            _ = bytes.withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
        }
        // The "service" closes its end a second after pre-switchover: the limit passed first.
        let closer = Thread { sleep(1); close(writeEnd) }
        closer.start()
        let watchdog = QEMUWatchdogProcess(input: readEnd, parent: pid_t.max, logger: Logger(label: "test"))
        #expect(watchdog.watch() == .serviceDied(Self.plan, continuing: false, killedAtLimit: true))
    }
}

/// The service's side of the pipe, with `cat` standing in for `rdmig qemu-watchdog`.
@Suite("QEMU watchdog: the service's handle starts the child and feeds its pipe (no QEMU needed)")
struct QEMUSourceWatchdogHandleTests {
    func catInto(_ path: String) -> QEMUSourceWatchdog.Launch {
        QEMUSourceWatchdog.Launch(executable: "/bin/sh", arguments: ["-c", "cat > '\(path)'"])
    }

    func lines(_ path: String) -> [QEMUWatchdogMessage] {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { QEMUWatchdogMessage(line: Array($0.utf8)) }
    }

    @Test func theChildReadsEveryStepAndTheEndOfItsPipeAtRelease() throws {
        let path = NSTemporaryDirectory() + "rdmig-watchdog-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        let watchdog = QEMUSourceWatchdog(launch: catInto(path), preSwitchoverLimit: .seconds(3), logger: Logger(label: "test"))
        try watchdog.arm(QEMUWatchdogLogicTests.plan)
        let pid = try #require(watchdog.pid)
        watchdog.preSwitchover()
        watchdog.continuing()
        // `cat` ends only at its stdin's end: no other process (not even the child itself)
        // may hold a write end, or a dead service would never be noticed.
        watchdog.release()
        #expect(kill(pid, 0) != 0 || (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z") == true,
                "the child still runs after release")
        #expect(lines(path) == [.arm(QEMUWatchdogLogicTests.plan, preSwitchoverLimit: .seconds(3)), .preSwitchover, .continuing, .release])
    }

    @Test func aHandleGoneWithoutReleaseEndsThePipeAsADeathWould() async throws {
        let path = NSTemporaryDirectory() + "rdmig-watchdog-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(path) }
        var watchdog: QEMUSourceWatchdog? = QEMUSourceWatchdog(launch: catInto(path), preSwitchoverLimit: .seconds(3), logger: Logger(label: "test"))
        try watchdog!.arm(QEMUWatchdogLogicTests.plan)
        let pid = try #require(watchdog!.pid)
        watchdog = nil
        let deadline = ContinuousClock.now + .seconds(5)
        var reaped = false
        while !reaped && ContinuousClock.now < deadline {
            var status: Int32 = 0
            // ECHILD: the handle's ChildProcess reaped it as it went.
            let result = waitpid(pid, &status, WNOHANG)
            reaped = result == pid || (result < 0 && errno == ECHILD)
            if !reaped { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(reaped, "the child did not see its pipe end")
        #expect(lines(path) == [.arm(QEMUWatchdogLogicTests.plan, preSwitchoverLimit: .seconds(3))])
    }
}
