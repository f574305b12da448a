#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigTestSupport
import Testing

/// `rdmig proxy source` and `rdmig proxy dest` as real processes on loopback (tcp backend),
/// between a unix client and a unix server that the test runs: bytes, half-closes, resets,
/// backpressure and refusals as the two local ends see them.
@Suite(.serialized) struct ProxyMode {
    /// A proxy pair relaying `source.sock` (clients connect here) to `server.sock`.
    final class Pair: @unchecked Sendable {
        let folder: String
        let key: String
        let dest: RdmigProcess
        let source: RdmigProcess
        var clientPath: String { folder + "/source.sock" }
        var serverPath: String { folder + "/server.sock" }

        init(keepServing: Bool = true, serverPath: String? = nil) throws {
            folder = "/tmp/rdmig-px-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            key = try temporaryKeyFile()
            let serving = keepServing ? ["--keep-serving"] : []
            dest = try RdmigProcess(["proxy", "dest", "--listen", "127.0.0.1:0", "--connect-unix", serverPath ?? folder + "/server.sock",
                                     "--key-file", key, "--backend", "tcp", "--json"] + serving)
            let port = try dest.listeningPort()
            source = try RdmigProcess(["proxy", "source", "--listen-unix", folder + "/source.sock", "--connect", "127.0.0.1:\(port)",
                                       "--key-file", key, "--backend", "tcp", "--json"] + serving)
            _ = try source.waitForLine(containing: "listening on unix:", timeout: 10)
        }

        deinit {
            source.kill()
            dest.kill()
            try? FileManager.default.removeItem(atPath: folder)
        }
    }

    // MARK: - Bytes

    @Test func echoesSeveralMiBByteExactBothWays() throws {
        let pair = try Pair()
        let server = try UnixServer(path: pair.serverPath) { connection in connection.echo() }
        defer { server.stop() }
        let data = Self.pattern(8 << 20, seed: 1)
        let client = try UnixConnection(connectingTo: pair.clientPath)
        let echoed = client.exchange(data, shutdownAfterWriting: true)
        #expect(echoed.count == data.count)
        #expect(echoed == data, "the echo differs from what was sent")
        let sourceReport = try pair.source.waitForReports(1, timeout: 5)[0]
        let destReport = try pair.dest.waitForReports(1, timeout: 5)[0]
        for report in [sourceReport, destReport] {
            #expect(report["status"] as? String == "completed")
            #expect(report["bytes-to-destination"] as? Int == data.count)
            #expect(report["bytes-to-source"] as? Int == data.count)
            #expect((report["relay-cpu-milliseconds"] as? Double ?? 0) > 0, "the relay threads' CPU time is measured")
        }
    }

    @Test func fourConcurrentConnectionsEachOnItsOwnTransportConnection() throws {
        let pair = try Pair()
        let server = try UnixServer(path: pair.serverPath) { connection in connection.echo() }
        defer { server.stop() }
        let results = ResultBox(count: 4)
        DispatchQueue.concurrentPerform(iterations: 4) { index in
            let data = Self.pattern(2 << 20, seed: UInt8(10 + index))
            do {
                let client = try UnixConnection(connectingTo: pair.clientPath)
                results.set(index, client.exchange(data, shutdownAfterWriting: true) == data)
            } catch {
                results.set(index, false)
            }
        }
        #expect(results.values == [true, true, true, true], "each connection's echo is its own bytes, in order")
        let reports = try pair.dest.waitForReports(4, timeout: 5)
        #expect(reports.allSatisfy { $0["status"] as? String == "completed" && $0["bytes-to-source"] as? Int == 2 << 20 })
        // Each relayed connection came from a transport connection of its own (its own port).
        #expect(Set(reports.compactMap { $0["peer"] as? String }).count == 4)
    }

    // MARK: - Half-close and reset

    @Test func halfCloseFromTheClientLeavesTheReplyDirectionOpen() throws {
        let pair = try Pair()
        // The server replies only after it saw the client's end of file.
        let server = try UnixServer(path: pair.serverPath) { connection in
            let request = connection.readToEnd()
            connection.write(Data("got \(request.count) bytes".utf8))
            connection.shutdownWrite()
        }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        client.write(Self.pattern(100_000, seed: 3))
        client.shutdownWrite()
        let started = Date()
        let reply = client.readToEnd()
        #expect(String(decoding: reply, as: UTF8.self) == "got 100000 bytes")
        #expect(Date().timeIntervalSince(started) < 2, "the half-close was relayed promptly")
    }

    @Test func halfCloseFromTheServerLeavesTheRequestDirectionOpen() throws {
        let pair = try Pair()
        let received = ResultBox(count: 1)
        let server = try UnixServer(path: pair.serverPath) { connection in
            connection.write(Data("hello".utf8))
            connection.shutdownWrite()
            received.set(0, connection.readToEnd() == Self.pattern(300_000, seed: 4))
        }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        #expect(String(decoding: client.readToEnd(), as: UTF8.self) == "hello", "the server's end of file arrives while the client still writes")
        client.write(Self.pattern(300_000, seed: 4))
        client.shutdownWrite()
        #expect(server.waitForHandlers(count: 1, timeout: 5))
        #expect(received.values == [true])
    }

    @Test func aClientThatClosesBothWaysEndsTheServersConnection() throws {
        let pair = try Pair()
        let writeFailed = ResultBox(count: 1)
        let server = try UnixServer(path: pair.serverPath) { connection in
            _ = connection.readToEnd()
            // The client is gone entirely: writing on must fail soon, not be swallowed.
            let deadline = Date(timeIntervalSinceNow: 4)
            let chunk = Self.pattern(64 << 10, seed: 5)
            while Date() < deadline {
                if !connection.write(chunk) {
                    writeFailed.set(0, true)
                    return
                }
            }
            writeFailed.set(0, false)
        }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        client.write(Data("bye".utf8))
        client.close()
        #expect(server.waitForHandlers(count: 1, timeout: 6))
        #expect(writeFailed.values == [true], "the source side's reset reached the server")
        let report = try pair.source.waitForReports(1, timeout: 5)[0]
        #expect(report["status"] as? String == "failed")
    }

    @Test func aServerThatClosesBothWaysEndsTheClientsConnection() throws {
        let pair = try Pair()
        let server = try UnixServer(path: pair.serverPath) { connection in
            var buffer = [UInt8](repeating: 0, count: 5)
            _ = recv(connection.fd, &buffer, 5, Int32(MSG_WAITALL))
            // Closed with the client still writing: the client's writes must fail soon.
        }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        client.write(Data("hello".utf8))
        let deadline = Date(timeIntervalSinceNow: 4)
        let chunk = Self.pattern(64 << 10, seed: 7)
        var failed = false
        while Date() < deadline && !failed { failed = !client.write(chunk) }
        #expect(failed, "the destination side's reset reached the client")
        let report = try pair.dest.waitForReports(1, timeout: 5)[0]
        #expect(report["status"] as? String == "failed")
    }

    // MARK: - Refusals, faults, backpressure

    @Test func aDestinationWithoutItsSocketRefusesAtOnce() throws {
        let pair = try Pair(serverPath: "/tmp/rdmig-px-missing-\(UUID().uuidString.prefix(8)).sock")
        let client = try UnixConnection(connectingTo: pair.clientPath)
        let started = Date()
        let bytes = client.readToEnd()
        #expect(bytes.isEmpty)
        #expect(Date().timeIntervalSince(started) < 2, "the source closed the client at once")
        let report = try pair.source.waitForReports(1, timeout: 5)[0]
        #expect(report["status"] as? String == "refused")
        #expect((report["error"] as? String ?? "").contains("cannot connect to its unix socket"))
        _ = try pair.source.waitForLine(containing: "refused", timeout: 2)
    }

    @Test func aServerThatStopsReadingBlocksTheClientBoundedThenResumes() throws {
        let pair = try Pair()
        let reading = ResultBox(count: 1)
        let total = 40 << 20
        let data = Self.pattern(total, seed: 6)
        let server = try UnixServer(path: pair.serverPath) { connection in
            while !reading.isSet(0) { usleep(10_000) }
            let received = connection.readToEnd()
            reading.set(0, received == data)
        }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        // Non-blocking writes until the proxy stops taking bytes for 500 ms.
        let accepted = client.writeUntilBlocked(data, quiet: 0.5, limit: 5)
        #expect(accepted > 0)
        #expect(accepted < 32 << 20, "memory is bounded by the rings and socket buffers: \(accepted) bytes were taken while the server read nothing")
        reading.set(0, true)
        client.setBlocking()
        client.write(data.subdata(in: accepted..<total))
        client.shutdownWrite()
        #expect(server.waitForHandlers(count: 1, timeout: 5))
        #expect(reading.values == [true], "every byte arrived, in order, once the server read again")
    }

    @Test func killingTheProxyDestinationEndsTheClientsConnection() throws {
        let pair = try Pair()
        let server = try UnixServer(path: pair.serverPath) { connection in connection.echo() }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        #expect(client.exchangeOnce(Data("ping".utf8)) == Data("ping".utf8))
        pair.dest.kill()
        let started = Date()
        #expect(client.readToEnd(timeout: 5).isEmpty)
        #expect(Date().timeIntervalSince(started) < 4, "the client saw its connection end")
    }

    @Test func aMigrationPeerRefusesAProxyByName() throws {
        let key = try temporaryKeyFile()
        let dest = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--key-file", key, "--backend", "tcp"])
        defer { dest.kill() }
        let port = try dest.listeningPort()
        let folder = "/tmp/rdmig-px-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let source = try RdmigProcess(["proxy", "source", "--listen-unix", folder + "/s.sock", "--connect", "127.0.0.1:\(port)",
                                       "--key-file", key, "--backend", "tcp", "--json"])
        defer { source.kill() }
        _ = try source.waitForLine(containing: "listening on unix:", timeout: 10)
        let client = try UnixConnection(connectingTo: folder + "/s.sock")
        #expect(client.readToEnd(timeout: 5).isEmpty)
        _ = try source.waitForLine(containing: "proxy mode", timeout: 5)
    }

    @Test func aSingleShotProxyExitsAfterItsConnectionsEnded() throws {
        let pair = try Pair(keepServing: false)
        let server = try UnixServer(path: pair.serverPath) { connection in connection.echo() }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        #expect(client.exchange(Data("once".utf8), shutdownAfterWriting: true) == Data("once".utf8))
        #expect(pair.source.wait(timeout: 5) == 0)
        #expect(pair.dest.wait(timeout: 5) == 0)
        let totals = try pair.source.waitForReports(2, timeout: 1)[1]
        #expect(totals["connections"] as? Int == 1)
        #expect(totals["completed"] as? Int == 1)
    }

    /// Pseudo-random bytes (xorshift), 4 at a time: different per seed, so a misrouted or
    /// reordered chunk shows.
    @Test func sigtermStopsAKeepServingProxyCleanlyAndEndsItsConnections() throws {
        let pair = try Pair()
        let server = try UnixServer(path: pair.serverPath) { connection in connection.echo() }
        defer { server.stop() }
        let client = try UnixConnection(connectingTo: pair.clientPath)
        #expect(client.exchangeOnce(Data("ping".utf8)) == Data("ping".utf8))
        kill(pair.source.process.processIdentifier, SIGTERM)
        #expect(pair.source.wait(timeout: 4) == 0, "a keep-serving proxy stopped by a signal exits 0; stderr:\n\(pair.source.stderr)")
        #expect(client.readToEnd(timeout: 3).isEmpty, "the running connection was ended")
        let reports = try pair.source.waitForReports(2, timeout: 1)
        #expect(reports[0]["status"] as? String == "failed")
        #expect(reports[1]["connections"] as? Int == 1)
        #expect(reports[1]["bytes-to-destination"] as? Int == 4)
        #expect(!FileManager.default.fileExists(atPath: pair.clientPath), "the unix socket is removed on exit")
    }

    static func pattern(_ count: Int, seed: UInt8) -> Data {
        var state = UInt32(seed) &* 2_654_435_761 | 1
        var data = Data(count: (count + 3) / 4 * 4)
        data.withUnsafeMutableBytes { raw in
            let words = raw.bindMemory(to: UInt32.self)
            for index in words.indices {
                state ^= state << 13
                state ^= state >> 17
                state ^= state << 5
                words[index] = state
            }
        }
        return data.prefix(count)
    }
}
