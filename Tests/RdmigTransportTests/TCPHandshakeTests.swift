#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
@testable import RdmigTransport
import Synchronization
import Testing

/// Listening, connecting and the preamble of the `tcp` backend, against raw sockets that
/// misbehave on purpose.
@Suite struct TCPHandshakeTests {
    let tcp = TCPTransport()
    let loopback = TransportEndpoint(host: "127.0.0.1", port: 0)

    @Test func garbagePreambleIsRefusedWithProtocolViolationNamingTheBytes() throws {
        let listener = try tcp.listener(on: loopback, options: TransportOptions())
        defer { listener.close() }
        let raw = try TCPRawPeer.connect(to: listener.localEndpoint)
        raw.send(Array("GET / HTTP/1.1\r\n\r\n".utf8))
        let error = #expect(throws: TransportError.self) { try listener.acceptConnection(timeout: .seconds(5)) }
        // The listener names the peer it turned away and carries on (see below).
        guard case .peerRefused(_, let detail)? = error, detail.contains("protocol violation") else {
            Issue.record("expected the peer refused with a protocol violation, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("47 45 54 20 2f 20 48 54"), "detail names the bytes: \(detail)")
        #expect(detail.contains("GET / HTTP"), "detail shows them as text: \(detail)")
        // The refused peer is let go.
        #expect(raw.receive(TCPPreamble.size + 1).count == TCPPreamble.size)
    }

    @Test func peerOfAnotherVersionIsRefusedOnAccept() throws {
        let listener = try tcp.listener(on: loopback, options: TransportOptions())
        defer { listener.close() }
        let raw = try TCPRawPeer.connect(to: listener.localEndpoint)
        raw.send(TCPPreamble.encode(version: 2))
        let error = #expect(throws: TransportError.self) { try listener.acceptConnection(timeout: .seconds(5)) }
        // The listener names the peer it turned away and carries on (see below).
        guard case .peerRefused(_, let detail)? = error, detail.contains("protocol violation") else {
            Issue.record("expected the peer refused with a protocol violation, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("version 2") && detail.contains("version 1"), "detail names both versions: \(detail)")
    }

    /// A peer that connects and says nothing holds one preamble thread until the handshake
    /// timeout, never the listener: the next peer is accepted at once.
    @Test func aSilentPeerDoesNotHoldTheListener() throws {
        var options = TransportOptions()
        options.handshakeTimeout = .milliseconds(500)
        let listener = try tcp.listener(on: loopback, options: options)
        defer { listener.close() }
        let silent = try TCPRawPeer.connect(to: listener.localEndpoint)
        let accepted = Mutex<TCPConnection?>(nil)
        let thread = try TCPRawPeer.onThread {
            let connection = try? listener.acceptConnection(timeout: .seconds(5))
            accepted.withLock { $0 = connection }
        }
        let client = try tcp.connection(to: listener.localEndpoint, options: options)
        thread.join()
        let server = try #require(accepted.withLock { $0 })
        #expect(server.peerEndpoint == client.localEndpoint)
        client.close()
        server.close()
        // Then the silent one is refused by name once its time is up, and let go.
        let error = #expect(throws: TransportError.self) { try listener.acceptConnection(timeout: .seconds(5)) }
        guard case .peerRefused(let peer, let detail)? = error else {
            Issue.record("expected the silent peer refused, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("timed out"), "\(detail)")
        #expect(peer.port != listener.localEndpoint.port)
        withExtendedLifetime(silent) {}
    }

    @Test func peerOfAnotherVersionIsRefusedOnConnect() throws {
        let (rawListener, port) = try TCPRawPeer.listen()
        let thread = try TCPRawPeer.onThread {
            let raw = rawListener.accept()
            raw.send(TCPPreamble.encode(version: 7))
            _ = raw.receive(TCPPreamble.size + 1)  // until the refusing side hangs up
        }
        defer { thread.join() }
        let error = #expect(throws: TransportError.self) {
            try tcp.connection(to: TransportEndpoint(host: "127.0.0.1", port: port), options: TransportOptions())
        }
        guard case .protocolViolation(let detail)? = error else {
            Issue.record("expected protocolViolation, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("version 7"), "detail names the peer's version: \(detail)")
    }

    @Test func peerThatHangsUpInsideThePreambleIsRefused() throws {
        let listener = try tcp.listener(on: loopback, options: TransportOptions())
        defer { listener.close() }
        let raw = try TCPRawPeer.connect(to: listener.localEndpoint)
        raw.send(Array("RDM".utf8))
        raw.shutdownAndClose()
        let error = #expect(throws: TransportError.self) { try listener.acceptConnection(timeout: .seconds(5)) }
        // The listener names the peer it turned away and carries on (see below).
        guard case .peerRefused(_, let detail)? = error, detail.contains("protocol violation") else {
            Issue.record("expected the peer refused with a protocol violation, got \(String(describing: error))")
            return
        }
        #expect(detail.contains("after 3 of the 16"), "\(detail)")
    }

    @Test func listeningOnAPortInUseNamesEADDRINUSE() throws {
        let first = try tcp.listener(on: loopback, options: TransportOptions())
        defer { first.close() }
        let error = #expect(throws: TransportError.self) {
            try tcp.listener(on: first.localEndpoint, options: TransportOptions())
        }
        guard case .system(let failure)? = error else {
            Issue.record("expected a system error, got \(String(describing: error))")
            return
        }
        #expect(failure.errno == EADDRINUSE && failure.call == "bind")
        #expect("\(error!)".contains("EADDRINUSE") && "\(error!)".contains("\(first.localEndpoint)"), "\(error!)")
    }

    @Test func connectTimesOutWhenThePeerNeverAnswersThePreamble() throws {
        // The kernel completes the TCP handshake into the backlog, but nobody ever accepts.
        let (rawListener, port) = try TCPRawPeer.listen()
        defer { withExtendedLifetime(rawListener) {} }
        var options = TransportOptions()
        options.connectTimeout = .milliseconds(100)
        let error = #expect(throws: TransportError.self) {
            try tcp.connection(to: TransportEndpoint(host: "127.0.0.1", port: port), options: options)
        }
        guard case .timedOut(_, let after)? = error else {
            Issue.record("expected timedOut, got \(String(describing: error))")
            return
        }
        #expect(after == .milliseconds(100))
    }

    @Test func acceptTimesOutWhenNobodyConnects() throws {
        let listener = try tcp.listener(on: loopback, options: TransportOptions())
        defer { listener.close() }
        let error = #expect(throws: TransportError.self) { try listener.acceptConnection(timeout: .milliseconds(10)) }
        guard case .timedOut? = error else {
            Issue.record("expected timedOut, got \(String(describing: error))")
            return
        }
    }

    @Test func closingTheListenerWakesABlockedAcceptAndRefusesNewConnections() throws {
        let listener = try tcp.listener(on: loopback, options: TransportOptions())
        let result = Mutex<TransportError?>(nil)
        let thread = try TCPRawPeer.onThread {
            do throws(TransportError) {
                _ = try listener.acceptConnection(timeout: nil)
            } catch {
                result.withLock { $0 = error }
            }
        }
        listener.close()
        thread.join()
        guard case .connectionClosed? = result.withLock({ $0 }) else {
            Issue.record("a blocked accept ended with \(String(describing: result.withLock { $0 }))")
            return
        }
        #expect(throws: TransportError.connectionRefused(listener.localEndpoint)) {
            try tcp.connection(to: listener.localEndpoint, options: TransportOptions())
        }
    }
}

extension TCPHandshakeTests {
    @Test func connectingByHostNameResolvesIt() throws {
        let listener = try tcp.listener(on: loopback, options: TransportOptions())
        defer { listener.close() }
        let accepted = Mutex<TCPConnection?>(nil)
        let thread = try TCPRawPeer.onThread {
            let connection = try? listener.acceptConnection(timeout: .seconds(5))
            accepted.withLock { $0 = connection }
        }
        let client = try tcp.connection(to: TransportEndpoint(host: "localhost", port: listener.localEndpoint.port),
                                         options: TransportOptions())
        thread.join()
        let server = try #require(accepted.withLock { $0 })
        #expect(client.peerEndpoint == listener.localEndpoint)
        client.close()
        server.close()
    }
}
