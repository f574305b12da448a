#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigSystem
@testable import RdmigTransport
import Synchronization
import Testing

/// `TransportOptions.socketBufferBytes` on real loopback connections: nil (`auto`) sizes the
/// receive buffer to what autotuning could reach and the send buffer from the round trip (the
/// old fixed 4 MiB capped long links, issue 19); a size is applied to both ends, forced past
/// net.core.rmem_max where the process may, refused by name where not.
@Suite struct TCPSocketBufferTests {
    let tcp = TCPTransport()

    /// What the kernel reports for SO_SNDBUF and SO_RCVBUF (twice the payload space it keeps).
    func buffers(_ connection: TCPConnection) throws -> (send: Int32, receive: Int32) {
        let endpoint = connection.localEndpoint
        return (try TCPSocket.option(connection.pair.fd, SOL_SOCKET, SO_SNDBUF, endpoint),
                try TCPSocket.option(connection.pair.fd, SOL_SOCKET, SO_RCVBUF, endpoint))
    }

    func connectedPair(_ options: TransportOptions) throws -> (client: TCPConnection, server: TCPConnection) {
        let listener = try tcp.listener(on: TransportEndpoint(host: "127.0.0.1", port: 0), options: options)
        defer { listener.close() }
        let accepted = Mutex<TCPConnection?>(nil)
        let thread = try TCPRawPeer.onThread {
            let connection = try? listener.acceptConnection(timeout: .seconds(5))
            accepted.withLock { $0 = connection }
        }
        let client = try tcp.connection(to: listener.localEndpoint, options: options)
        thread.join()
        return (client, try #require(accepted.withLock { $0 }))
    }

    static func sysctl(_ path: String) -> Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int32(text.split(whereSeparator: { $0 == "\t" || $0 == " " || $0 == "\n" }).last ?? "")
    }

    @Test func autoFixesTheReceiveBufferAtAutotuningsMaximumAndLeavesALoopbackSendBufferAutotuned() throws {
        let (client, server) = try connectedPair(TransportOptions())
        defer {
            client.close()
            server.close()
        }
        // The old code asked for 4 MiB each way, which the kernel reports doubled.
        let oldPinned: Int32 = 2 * (4 << 20)
        let receiveMaximum = Self.sysctl("/proc/sys/net/ipv4/tcp_rmem") ?? 6 << 20
        for connection in [client, server] {
            let (send, receive) = try buffers(connection)
            // A loopback round trip times 10 Gb/s is far below 4 MiB: the send buffer stays
            // autotuned (from tcp_wmem's default, at most its maximum), not pinned.
            #expect(send != oldPinned, "send \(send)")
            if let sendMaximum = Self.sysctl("/proc/sys/net/ipv4/tcp_wmem"), sendMaximum >= TCPSocket.minimumBufferBytes {
                #expect(TCPSocket.sizeSendBufferForRoundTrip(connection.pair.fd, connection.localEndpoint) == nil)
            }
            if geteuid() == 0 {
                // Forced before the handshake to what autotuning could reach, at least 4 MiB.
                #expect(receive == 2 * max(Int32(TCPSocket.minimumBufferBytes), receiveMaximum), "receive \(receive)")
            } else {
                #expect(receive <= 2 * receiveMaximum, "receive \(receive) above twice tcp_rmem's maximum \(receiveMaximum)")
            }
        }
    }

    @Test func aConfiguredSizeIsAppliedToBothEnds() throws {
        var options = TransportOptions()
        options.socketBufferBytes = 1 << 20
        let (client, server) = try connectedPair(options)
        defer {
            client.close()
            server.close()
        }
        for connection in [client, server] {
            let (send, receive) = try buffers(connection)
            #expect(send == 2 << 20 && receive == 2 << 20, "send \(send), receive \(receive)")
        }
    }

    @Test func aSizeAboveTheSystemMaximumIsForcedOrRefusedByName() throws {
        guard let cap = Self.sysctl("/proc/sys/net/core/rmem_max"), cap < 512 << 20 else { return }
        var options = TransportOptions()
        options.socketBufferBytes = Int(cap) * 2
        do {
            let (client, server) = try connectedPair(options)
            defer {
                client.close()
                server.close()
            }
            // Only with CAP_NET_ADMIN (root here) may the size pass net.core.rmem_max.
            #expect(geteuid() == 0)
            #expect(try buffers(client).receive >= 4 * cap)
        } catch let error as TransportError {
            #expect(geteuid() != 0, "\(error)")
            #expect("\(error)".contains("net.core"), "\(error)")
        }
    }

    @Test func aSizeOutOfRangeIsRefusedBeforeConnecting() {
        var options = TransportOptions()
        options.socketBufferBytes = 4096
        #expect {
            _ = try tcp.connection(to: TransportEndpoint(host: "127.0.0.1", port: 9), options: options)
        } throws: { error in
            "\(error)".contains("socket buffer of 4096 bytes is out of range: use 64KiB … 1GiB")
        }
    }
}
