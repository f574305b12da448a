#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
@testable import RdmigTransport
import Synchronization
import Testing

/// A plain TCP socket standing in for a peer that misbehaves on purpose (wrong preamble,
/// unknown frames, a reset), for the `tcp` backend's protocol tests.
final class TCPRawPeer: @unchecked Sendable {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    deinit { if !closed && fd >= 0 { Glibc.close(fd) } }

    /// A connected raw socket to `endpoint` (IPv4 loopback), with a receive timeout as a guard.
    static func connect(to endpoint: TransportEndpoint) throws -> TCPRawPeer {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = endpoint.port.bigEndian
        address.sin_addr.s_addr = inet_addr(endpoint.host)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(result == 0, "raw connect to \(endpoint): errno \(errno)")
        let peer = TCPRawPeer(fd: fd)
        peer.setReceiveTimeout(seconds: 5)
        return peer
    }

    /// A raw listening socket on 127.0.0.1 with a free port.
    static func listen() throws -> (peer: TCPRawPeer, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && Glibc.listen(fd, 4) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        try #require(bound, "raw listen: errno \(errno)")
        return (TCPRawPeer(fd: fd), UInt16(bigEndian: address.sin_port))
    }

    /// Accepts one connection on a listening raw socket.
    func accept() -> TCPRawPeer {
        let peer = TCPRawPeer(fd: Glibc.accept(fd, nil, nil))
        peer.setReceiveTimeout(seconds: 5)
        return peer
    }

    func setReceiveTimeout(seconds: Int) {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return }
            offset += sent
        }
    }

    /// Reads up to `count` bytes; fewer when the other side closed or the guard timeout passed.
    func receive(_ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let received = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) }
            if received <= 0 { break }
            offset += received
        }
        return Array(bytes.prefix(offset))
    }

    /// The handshake of a well-behaved peer.
    func exchangePreambles() throws {
        send(TCPPreamble.encode())
        try #require(receive(TCPPreamble.size) == TCPPreamble.encode())
    }

    func send(_ header: TCPFrameHeader, payload: [UInt8] = []) {
        var bytes = [UInt8](repeating: 0, count: TCPFrameHeader.size)
        bytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
        send(bytes + payload)
    }

    /// Reads one frame header, or nil when the connection ended first.
    func receiveHeader() -> TCPFrameHeader? {
        let bytes = receive(TCPFrameHeader.size)
        guard bytes.count == TCPFrameHeader.size else { return nil }
        return bytes.withUnsafeBytes { TCPFrameHeader(decoding: $0.baseAddress!) }
    }

    /// Closes with an RST instead of a FIN (SO_LINGER with a zero timeout), as a crashed host would look.
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        shutdownAndClose()
    }

    /// Hangs up with a FIN and nothing unread (so no RST), as a process that exits after
    /// reading everything: shutdown for writing, read until the other side closes, close.
    func hangUp() {
        shutdown(fd, Int32(SHUT_WR))
        while !receive(4096).isEmpty {}
        shutdownAndClose()
    }

    private(set) var closed = false
    func shutdownAndClose() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
    }

    /// Runs `body` on its own thread (for the raw side of a handshake that blocks the test thread).
    static func onThread(_ body: @escaping @Sendable () -> Void) throws -> SystemThread {
        try SystemThread(name: "tcp-raw-peer", body)
    }
}
