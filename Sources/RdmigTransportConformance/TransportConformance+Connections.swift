#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport
import Synchronization

/// Cases about establishing, closing and losing connections.
extension TransportConformance {
    static func connectAndAcceptGiveAConnectedPair(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let port = peers.listener.localEndpoint.port
        try expect(port != 0, "listening on port 0 must report the chosen port, got \(peers.listener.localEndpoint)")
        for (side, connection) in [("client", peers.client), ("server", peers.server)] {
            try expect(connection.backend == environment.backend.kind, "\(side) reports backend \(connection.backend)")
            try expect(connection.failure == nil, "\(side) of a fresh connection reports failure \(String(describing: connection.failure))")
            try expectNoCompletion(on: connection, "\(side) of a fresh connection")
        }
        try expect(peers.client.peerEndpoint.port == port,
                   "client's peer endpoint \(peers.client.peerEndpoint) is not the listener's port \(port)")
        try expect(peers.server.localEndpoint.port == port,
                   "server's local endpoint \(peers.server.localEndpoint) is not the listener's port \(port)")
        try expect(peers.server.peerEndpoint.port == peers.client.localEndpoint.port,
                   "server sees the client at \(peers.server.peerEndpoint), the client is at \(peers.client.localEndpoint)")
        // A bounded wait with nothing outstanding returns 0 instead of hanging.
        let buffer = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 4)
        defer { buffer.deallocate() }
        try expect(peers.client.waitForCompletions(into: buffer, timeout: .milliseconds(5)) == 0,
                   "waitForCompletions with nothing outstanding returned a completion")
    }

    static func severalConnectionsToOneListenerWorkIndependently(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let extra = 3
        var pairs = [(client: peers.client, server: peers.server)]
        defer { for pair in pairs.dropFirst() { pair.client.close(); pair.server.close() } }
        for _ in 0..<extra {
            pairs.append(try ConformancePeers.connect(environment.backend, to: peers.listener, options: environment.options))
        }
        let chunk = 256 << 10
        let sources = peers.memory(pairs.count * chunk)
        let targets = peers.memory(pairs.count * chunk)
        var windows: [RemoteWindow] = []
        for (index, pair) in pairs.enumerated() {
            // Each connect is answered by the accept running beside it, so the pair is one connection.
            try expect(pair.server.peerEndpoint.port == pair.client.localEndpoint.port,
                       "connection \(index): server sees \(pair.server.peerEndpoint), client is \(pair.client.localEndpoint)")
            let target = try peers.register(targets, on: pair.server, access: [.localWrite, .remoteWrite],
                                            offset: index * chunk, length: chunk)
            windows.append(target.window())
        }
        // All connections carry writes at the same time.
        for (index, pair) in pairs.enumerated() {
            sources.fillPattern(seed: UInt64(index) + 100, offset: index * chunk, length: chunk)
            let source = try peers.register(sources, on: pair.client, access: .localWrite, offset: index * chunk, length: chunk)
            let pieces = 8
            let piece = chunk / pieces
            for part in 0..<pieces {
                try expectNoError("post a write on connection \(index)") {
                    try pair.client.postWrite(source.slice(offset: part * piece, length: piece),
                                              to: windows[index].slice(offset: UInt64(part * piece), length: piece),
                                              id: UInt64(part), signaled: part == pieces - 1)
                }
            }
        }
        for (index, pair) in pairs.enumerated() {
            try expectCompletion(try completions(1, on: pair.client, "connection \(index)'s writes")[0], id: 7, kind: .write,
                                 "connection \(index)'s last write")
            try targets.expectEqual(index * chunk, sources, index * chunk, length: chunk, "connection \(index)'s window")
        }
    }

    /// A migration's page channels: several connections to one listener, the same memory
    /// registered on each, and each writing its own stripes of it from its own thread at the
    /// same time. Every byte must land, and no connection's writes may disturb another's.
    static func severalConnectionsWriteIntoOneWindowConcurrently(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let channels = 4
        var pairs = [(client: peers.client, server: peers.server)]
        defer { for pair in pairs.dropFirst() { pair.client.close(); pair.server.close() } }
        for _ in 1..<channels {
            pairs.append(try ConformancePeers.connect(environment.backend, to: peers.listener, options: environment.options))
        }
        let stripe = 64 << 10
        let stripes = 16 * channels
        let total = stripe * stripes
        let source = peers.memory(total)
        source.fillPattern(seed: 77)
        let target = peers.memory(total)
        // One registration of the whole of each memory per connection, as each page channel
        // registers the whole guest.
        var writes: [(local: MemoryRegistration, window: RemoteWindow)] = []
        for pair in pairs {
            let local = try peers.register(source, on: pair.client, access: .localWrite)
            let window = try peers.register(target, on: pair.server, access: [.localWrite, .remoteWrite]).window()
            writes.append((local, window))
        }
        let failures = ConformanceFailures()
        let threads = try (0..<channels).map { channel in
            let pair = pairs[channel], write = writes[channel]
            return try expectNoError("start the thread of connection \(channel)") {
                try SystemThread(name: "conformance-\(channel)") {
                    do {
                        // Stripes channel, channel + N, …: interleaved with the others' in the window.
                        let mine = Array(stride(from: channel, to: stripes, by: channels))
                        for (index, stripeIndex) in mine.enumerated() {
                            let offset = stripeIndex * stripe
                            try pair.client.postWrite(write.local.slice(offset: offset, length: stripe),
                                                      to: write.window.slice(offset: UInt64(offset), length: stripe),
                                                      id: UInt64(index), signaled: index == mine.count - 1)
                        }
                        let done = try completions(1, on: pair.client, "connection \(channel)'s writes")
                        try expectCompletion(done[0], id: UInt64(mine.count - 1), kind: .write, "connection \(channel)'s last write")
                    } catch {
                        failures.record("connection \(channel): \(error)")
                    }
                }
            }
        }
        for thread in threads { thread.join() }
        if let failure = failures.first { throw ConformanceFailure(failure) }
        try target.expectEqual(0, source, 0, length: total, "\(channels) connections' interleaved stripes in one window")
    }

    static func connectToAClosedPortIsRefused(_ environment: ConformanceEnvironment) throws {
        let listener = try expectNoError("listen on \(environment.host):0") {
            try environment.backend.listen(on: TransportEndpoint(host: environment.host, port: 0), options: environment.options)
        }
        let endpoint = listener.localEndpoint
        listener.close()
        var options = environment.options
        options.connectTimeout = ConformancePeers.guardTime
        let closed = TransportEndpoint(host: environment.host, port: endpoint.port)
        let error = try expectTransportError("connect to the closed port \(closed)", matches: {
            if case .connectionRefused = $0 { return true }
            return false
        }) {
            try environment.backend.connect(to: closed, options: options)
        }
        try expect(error == .connectionRefused(closed), "the refusal must name the endpoint asked for: \(error)")
    }

    static func ipv6ConnectionWorks(_ environment: ConformanceEnvironment) throws {
        guard let host = environment.ipv6Host else {
            throw ConformanceSkip("no IPv6 address given for \(environment.host) (set the environment's ipv6Host, `--ipv6-host`)")
        }
        let listener: any TransportListener
        do {
            listener = try environment.backend.listen(on: TransportEndpoint(host: host, port: 0), options: environment.options)
        } catch .unreachable(_, let reason) {
            throw ConformanceSkip("\(host) is not available here: \(reason)")
        } catch .system(let error) where error.errno == EADDRNOTAVAIL || error.errno == EAFNOSUPPORT {
            throw ConformanceSkip("\(host) is not available here: \(error)")
        } catch {
            throw ConformanceFailure("listen on [\(host)]:0 failed: \(error)")
        }
        defer { listener.close() }
        try expect(listener.localEndpoint.isIPv6Literal && listener.localEndpoint.port != 0,
                   "listening on [\(host)]:0 reports \(listener.localEndpoint)")
        let (client, server) = try ConformancePeers.connect(environment.backend, to: listener, options: environment.options)
        let source = ConformanceMemory(count: 4096)
        let target = ConformanceMemory(count: 4096)
        defer {
            client.close()
            server.close()
            withExtendedLifetime((source, target)) {}
        }
        try expect(client.peerEndpoint.isIPv6Literal && server.peerEndpoint.isIPv6Literal,
                   "an IPv6 connection reports \(client.peerEndpoint) and \(server.peerEndpoint)")
        source.fillPattern(seed: 6)
        let local = try expectNoError("register") { try client.register(source.bytes, access: .localWrite) }
        let window = try expectNoError("register") { try server.register(target.bytes, access: [.localWrite, .remoteWrite]) }.window()
        try expectNoError("post a write over IPv6") {
            try client.postWrite(local.wholeSlice, to: window.slice(offset: 0, length: 4096), id: 6, signaled: true)
        }
        try expectCompletion(try completions(1, on: client, "a write over IPv6")[0], id: 6, kind: .write, "a write over IPv6")
        try target.expectEqual(0, source, 0, length: 4096, "bytes written over IPv6")
    }

    static func orderlyCloseIsReportedToThePeer(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let buffers = peers.memory(4096)
        let registration = try peers.register(buffers, on: peers.server, access: .localWrite)
        for id in UInt64(1)...3 {
            try expectNoError("post a receive") { try peers.server.postReceive(registration.slice(offset: Int(id) * 64, length: 64), id: id) }
        }
        peers.client.close()
        try collect(on: peers.server, "the server's receives after the client closed") { completion in
            try expectCompletion(completion, id: completion.id, kind: .receive, status: .flushed, "a receive outstanding at the peer's close")
            return completion.id < 3
        }
        guard case .peerDisconnected? = peers.server.failure else {
            throw ConformanceFailure("after the peer's close the server reports \(String(describing: peers.server.failure)), expected peerDisconnected")
        }
        try expectTransportError("posting on the closed client", matches: { if case .connectionClosed = $0 { return true }; return false }) {
            try peers.client.postSend(LocalSlice(address: 0, length: 0, localKey: 0), id: 9, signaled: true)
        }
        try expectTransportError("posting on the server whose peer closed", matches: { if case .connectionClosed = $0 { return true }; return false }) {
            try peers.server.postReceive(registration.slice(offset: 0, length: 64), id: 9)
        }
        peers.client.close()  // A second close is harmless.
    }

    static func peerDisconnectMidTransferIsReportedOnBothSides(_ environment: ConformanceEnvironment) throws {
        let peers = try ConformancePeers(environment)
        let chunk = 1 << 20
        let source = peers.memory(chunk)
        source.fillPattern(seed: 9)
        let target = peers.memory(chunk)
        let local = try peers.register(source, on: peers.client, access: .localWrite)
        let window = try peers.register(target, on: peers.server, access: [.localWrite, .remoteWrite]).window()
        let serverReceives = try peers.register(peers.memory(256), on: peers.server, access: .localWrite)
        try expectNoError("post a receive") { try peers.server.postReceive(serverReceives.wholeSlice, id: 500) }
        // Far more than the socket buffers hold, then a SEND the server has no receive for
        // (its only receive is taken by the first SEND): the last WR cannot finish before the close.
        let writes = max(1, min(environment.options.sendQueueDepth - 2, 64))
        for index in 0..<writes {
            try expectNoError("post write \(index)") {
                try peers.client.postWrite(local.wholeSlice, to: window.slice(offset: 0, length: chunk), id: UInt64(index),
                                           signaled: index % 8 == 7)
            }
        }
        try expectNoError("post a SEND") { try peers.client.postSend(local.slice(offset: 0, length: 16), id: 1000, signaled: true) }
        try expectNoError("post a SEND") { try peers.client.postSend(local.slice(offset: 0, length: 16), id: 1001, signaled: true) }
        peers.server.close()

        var failed = false
        var statuses: [UInt64: Completion.Status] = [:]
        try collect(on: peers.client, "the client's WRs after the server closed") { completion in
            statuses[completion.id] = completion.status
            if completion.status == .success {
                try expect(!failed, "WR \(completion.id) succeeded after an earlier WR failed")
            } else {
                failed = true
            }
            return completion.id != 1001
        }
        try expect(failed && statuses[1001] != .success, "the SEND the server never had a receive for completed \(String(describing: statuses[1001]))")
        guard case .peerDisconnected? = peers.client.failure else {
            throw ConformanceFailure("the client reports \(String(describing: peers.client.failure)), expected peerDisconnected")
        }
        try expectTransportError("posting on the client after the peer vanished", matches: { if case .connectionClosed = $0 { return true }; return false }) {
            try peers.client.postWrite(local.wholeSlice, to: window.slice(offset: 0, length: chunk), id: 2000, signaled: true)
        }
        // The closing side flushed its own outstanding work.
        var serverSaw: [Completion] = []
        try collect(on: peers.server, "the closing server's receives") { completion in
            serverSaw.append(completion)
            return completion.id != 500
        }
        try expect(serverSaw.last.map { $0.status == .success || $0.status == .flushed } ?? false,
                   "the server's receive completed \(serverSaw)")
    }
}

/// Failures seen on other threads, for the case's own thread to throw.
final class ConformanceFailures: Sendable {
    private let messages = Mutex<[String]>([])
    func record(_ message: String) { messages.withLock { $0.append(message) } }
    var first: String? { messages.withLock { $0.first } }
}
