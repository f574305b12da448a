#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigQEMU
import Synchronization
import Testing

@Suite("QMP client against a fake QMP server")
struct QMPClientTests {
    @Test func connectingReadsTheGreetingAndNegotiatesCapabilities() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in try peer.negotiate() }
        let client = try await QMPClient.connect(to: server.path)
        try await script.value
        #expect(client.version == QEMUVersion(major: 10, minor: 0, micro: 2, package: "fake"))
        #expect(client.greeting.capabilities == ["oob"])
    }

    @Test func eventsSentBeforeAReplyAreDeliveredWithTheirTimestampsAndTheReplyStillArrives() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in
            try peer.negotiate()
            let request = try peer.expect("migrate")
            try peer.event("MIGRATION", data: ["status": "setup"], seconds: 1_700_000_000, microseconds: 250)
            try peer.event("STOP", seconds: 1_700_000_001, microseconds: 999_999)
            try peer.reply(to: request, .object([:]))
            let status = try peer.expect("query-status")
            try peer.event("MIGRATION", data: ["status": "completed"], seconds: 1_700_000_002, microseconds: 5)
            try peer.reply(to: status, ["status": "postmigrate", "running": false])
        }
        let client = try await QMPClient.connect(to: server.path)
        let subscription = client.subscribe()
        try await client.migrate(uri: "fd:x")
        // Events QEMU sent before the reply are buffered by the time the command returns.
        let buffered = subscription.drain()
        #expect(buffered.map(\.name) == ["MIGRATION", "STOP"])
        #expect(buffered.first?.migrationStatus == .setup)
        #expect(buffered.first?.timestamp == QMPTimestamp(seconds: 1_700_000_000, microseconds: 250))
        #expect(try await client.queryStatus().isPostMigrate)
        let completed = try await subscription.next(named: "MIGRATION", timeout: .seconds(5))
        #expect(completed.migrationStatus == .completed)
        // The client's own buffer kept all three, in order; waits take them by name.
        let stop = try await client.waitForEvent(named: "STOP", timeout: .seconds(1))
        #expect(stop.timestamp == QMPTimestamp(seconds: 1_700_000_001, microseconds: 999_999))
        let statuses = client.takeEvents().compactMap(\.migrationStatus)
        #expect(statuses == [.setup, .completed])
        if let end = completed.timestamp, let start = buffered.first?.timestamp {
            #expect(end.duration(since: start) == .microseconds(1_999_755))
        }
        try await script.value
    }

    @Test func concurrentCommandsGetTheirOwnRepliesEvenWhenAnsweredOutOfOrder() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in
            try peer.negotiate()
            let first = try peer.receive()
            let second = try peer.receive()
            try peer.reply(to: second, .string(second.command))
            try peer.reply(to: first, .string(first.command))
        }
        let client = try await QMPClient.connect(to: server.path)
        async let a = client.execute("query-a")
        async let b = client.execute("query-b")
        let (replyA, replyB) = try await (a, b)
        #expect(replyA == "query-a")
        #expect(replyB == "query-b")
        try await script.value
    }

    @Test func anErrorReplyBecomesAQMPErrorWithQEMUsClassAndDescription() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in
            try peer.negotiate()
            let request = try peer.expect("migrate")
            try peer.fail(request, errorClass: "GenericError", description: "There's a migration process in progress")
        }
        let client = try await QMPClient.connect(to: server.path)
        let error = await #expect(throws: QMPError.self) { try await client.migrate(uri: "fd:x") }
        #expect(error == .commandFailed(command: "migrate", errorClass: "GenericError",
                                        description: "There's a migration process in progress"))
        #expect(error?.description == "QEMU refused migrate: There's a migration process in progress (GenericError)")
        #expect(error?.errorClass == "GenericError")
        try await script.value
    }

    @Test func getfdCarriesTheDescriptorOnTheCommandsOwnMessage() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in
            try peer.negotiate()
            let request = try peer.expect("getfd")
            guard let passed = request.descriptor, request.arguments?["fdname"] == "migration" else {
                throw FakeQMPServer.ScriptError(description: "getfd without a descriptor or name: \(request)")
            }
            // Prove it is the client's pipe: write through the server's copy.
            let written = "through the passed fd".withCString { write(passed, $0, strlen($0)) }
            close(passed)
            guard written > 0 else { throw FakeQMPServer.ScriptError(description: "write to passed fd failed") }
            try peer.reply(to: request, .object([:]))
        }
        let client = try await QMPClient.connect(to: server.path)
        var ends: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0)
        defer { close(ends[0]) }
        try await client.getfd(name: "migration", fd: ends[1])
        close(ends[1])
        try await script.value
        var bytes = [UInt8](repeating: 0, count: 64)
        let count = read(ends[0], &bytes, bytes.count)
        #expect(String(decoding: bytes[..<max(0, count)], as: UTF8.self) == "through the passed fd")
    }

    @Test func aMissingSocketSaysHowQEMUShouldBeStarted() async throws {
        let error = await #expect(throws: QMPError.self) {
            try await QMPClient.connect(to: "/tmp/rdmig-no-such-dir/qmp.sock")
        }
        #expect(error == .socketMissing(path: "/tmp/rdmig-no-such-dir/qmp.sock"))
        #expect(error?.description.contains("-qmp unix:/tmp/rdmig-no-such-dir/qmp.sock,server=on,wait=off") == true)
    }

    @Test func aSocketFileNobodyListensOnIsReportedAsQEMUGone() async throws {
        let server = try FakeQMPServer(listening: false)
        let error = await #expect(throws: QMPError.self) { try await QMPClient.connect(to: server.path) }
        #expect(error == .nobodyListening(path: server.path))
    }

    @Test func aSocketThatNeverGreetsIsReportedBusy() async throws {
        // QEMU leaves a second client in its backlog without a greeting.
        let server = try FakeQMPServer()
        let error = await #expect(throws: QMPError.self) {
            try await QMPClient.connect(to: server.path, greetingTimeout: .milliseconds(300))
        }
        #expect(error == .busy(path: server.path, waited: .milliseconds(300)))
        #expect(error?.description.contains("serves one client at a time") == true)
    }

    @Test func somethingOtherThanQMPIsRefused() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in try peer.send(#"{"hello": "world"}"#) }
        let error = await #expect(throws: QMPError.self) { try await QMPClient.connect(to: server.path) }
        guard case .notQMP(let path, let first)? = error else {
            Issue.record("expected notQMP, got \(String(describing: error))")
            return
        }
        #expect(path == server.path)
        #expect(first.contains("hello"))
        try await script.value
    }

    @Test func qemuVanishingFailsTheOutstandingCommandAndEndsEveryEventWait() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in
            try peer.negotiate()
            _ = try peer.expect("query-migrate")
            peer.close()
        }
        let client = try await QMPClient.connect(to: server.path)
        let stream = client.events()
        let error = await #expect(throws: QMPError.self) { try await client.queryMigrate() }
        guard case .disconnected(let path, let detail)? = error else {
            Issue.record("expected disconnected, got \(String(describing: error))")
            return
        }
        #expect(path == server.path)
        #expect(detail.contains("query-migrate"))
        #expect(error?.isDisconnection == true)
        var streamed = 0
        for await _ in stream { streamed += 1 }
        #expect(streamed == 0)
        await #expect(throws: QMPError.self) { try await client.waitForEvent(named: "STOP", timeout: .seconds(5)) }
        #expect(client.endReason != nil)
        await #expect(throws: QMPError.self) { try await client.cont() }
        try await script.value
    }

    @Test func waitingForAnEventThatNeverComesTimesOutAndALateReplyIsDropped() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in
            try peer.negotiate()
            let slow = try peer.expect("query-slow")
            let next = try peer.expect("query-status")
            try peer.reply(to: slow, "late")
            try peer.reply(to: next, ["status": "running", "running": true])
        }
        let client = try await QMPClient.connect(to: server.path)
        let eventError = await #expect(throws: QMPError.self) {
            try await client.waitForEvent(named: "RESUME", timeout: .milliseconds(100))
        }
        guard case .timedOut(_, let operation, _)? = eventError else {
            Issue.record("expected timedOut, got \(String(describing: eventError))")
            return
        }
        #expect(operation.contains("RESUME"))
        await #expect(throws: QMPError.self) { try await client.execute("query-slow", timeout: .milliseconds(100)) }
        let status = try await client.queryStatus()
        #expect(status == QEMURunStatus(status: "running", running: true))
        try await script.value
    }

    @Test func anEventStreamSeesEventsInOrderUntilTheClientCloses() async throws {
        let server = try FakeQMPServer()
        let script = server.serve { peer in
            try peer.negotiate()
            let request = try peer.expect("cont")
            try peer.reply(to: request, .object([:]))
            for pass in 1...3 { try peer.event("MIGRATION_PASS", data: ["pass": .int(Int64(pass))]) }
            try peer.event("RESUME")
            _ = try? peer.receive(timeout: .seconds(5))  // until the client closes
        }
        let client = try await QMPClient.connect(to: server.path)
        let stream = client.events()
        try await client.cont()
        var names: [String] = []
        for await event in stream {
            names.append(event.name + (event.data["pass"].map { "\($0)" } ?? ""))
            if event.name == "RESUME" { client.close() }
        }
        #expect(names == ["MIGRATION_PASS1", "MIGRATION_PASS2", "MIGRATION_PASS3", "RESUME"])
        #expect(client.endReason == .closed(path: server.path))
        try await script.value
    }
}
