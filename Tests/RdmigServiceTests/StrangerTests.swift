#if canImport(Glibc)
import Glibc
#endif
import Foundation
import RdmigChannels
import RdmigSystem
import RdmigTestSupport
import Testing

/// A raw loopback TCP connection a test drives byte by byte: the stranger at the door.
final class RawPeer {
    let fd: Int32

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw ProcessFailure("connecting to 127.0.0.1:\(port): errno \(errno)")
        }
    }

    deinit { close(fd) }

    /// Sends `bytes`; false once the destination has closed the connection.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    /// The rdmig tcp preamble (see TCPPreamble): magic, version 1, reserved.
    static let preamble: [UInt8] = Array("RDMIGTCP".utf8) + [1, 0, 0, 0, 0, 0, 0, 0]

    /// A CHANNEL_SETUP control frame (type 0: signal window, receive count, receive buffer
    /// size), as a router sends first, asking for receive buffers too small for a header.
    static func channelSetupFrame(receiveBufferSize: UInt32) -> [UInt8] {
        var payload: [UInt8] = []
        for value in [UInt64(0x1000), UInt64(4096)] { withUnsafeBytes(of: value.littleEndian) { payload += $0 } }
        for value in [UInt32(1), UInt32(2), receiveBufferSize] { withUnsafeBytes(of: value.littleEndian) { payload += $0 } }
        var frame: [UInt8] = Array("RMIG".utf8)
        withUnsafeBytes(of: RdmigProtocol.version.littleEndian) { frame += $0 }
        withUnsafeBytes(of: UInt16(0).littleEndian) { frame += $0 }
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { frame += $0 }
        let checksum = payload.withUnsafeBytes { CRC32C.checksum($0) }
        withUnsafeBytes(of: checksum.littleEndian) { frame += $0 }
        return frame + payload
    }

    /// A tcp-backend SEND frame (see TCPFrameHeader) carrying `payload`, WR `sequence`.
    static func sendFrame(_ payload: [UInt8], sequence: UInt64) -> [UInt8] {
        var header = [UInt8](repeating: 0, count: 32)
        header[0] = 2
        header[1] = 2  // completion requested
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { header.replaceSubrange(16..<20, with: $0) }
        withUnsafeBytes(of: sequence.littleEndian) { header.replaceSubrange(24..<32, with: $0) }
        return header + payload
    }
}

/// Before a peer proves it holds the key it gets nothing but a small handshake buffer, and
/// no stranger — silent, junk, or speaking half the protocol — can hold or end a destination.
@Suite(.serialized) struct Strangers {
    func startDestination(key: String, extra: [String] = []) throws -> (RdmigProcess, UInt16) {
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "-v"] + extra)
        return (destination, try destination.listeningPort())
    }

    func migrate(port: UInt16, key: String, connectTimeout: String = "10s") throws -> RdmigProcess {
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key,
                                       "--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB",
                                       "--connect-timeout", connectTimeout, "--peer-timeout", "20s"])
        return source
    }

    @Test func silentPeersDoNotHoldTheDestinationFromALegitimateSource() throws {
        let key = try temporaryKeyFile()
        let (destination, port) = try startDestination(key: key)
        // One says nothing at all; one sends the tcp preamble and then nothing (it would wait
        // in HELLO). Before, each held the destination's only accept for 10 s or 60 s.
        let silent = try RawPeer(port: port)
        let halfway = try RawPeer(port: port)
        halfway.send(RawPeer.preamble)
        usleep(200_000)
        let source = try migrate(port: port, key: key, connectTimeout: "3s")
        #expect(source.wait(timeout: 60) == 0, "source stderr:\n\(source.stderr)")
        #expect(try source.report()["status"] as? String == "completed")
        #expect(destination.wait(timeout: 30) == 0, "destination stderr:\n\(destination.stderr)")
        withExtendedLifetime((silent, halfway)) {}
    }

    @Test func keepServingSurvivesScansJunkAndWrongKeysAndThenMigrates() throws {
        let key = try temporaryKeyFile()
        let (destination, port) = try startDestination(key: key, extra: ["--keep-serving", "--handshake-timeout", "1s"])
        defer { destination.kill(); destination.wait(timeout: 10) }
        // A port scan: connect and close.
        for _ in 0..<20 { _ = try RawPeer(port: port) }
        // HTTP, binary garbage, a preamble followed by garbage frames.
        try RawPeer(port: port).send(Array("GET / HTTP/1.1\r\nHost: rdmig\r\n\r\n".utf8))
        try RawPeer(port: port).send((0..<4096).map { _ in UInt8.random(in: 0...255) })
        let framed = try RawPeer(port: port)
        framed.send(RawPeer.preamble + (0..<64).map { _ in UInt8.random(in: 0...255) })
        // Idle connections, left open while the source migrates.
        let idle = try (0..<3).map { _ in try RawPeer(port: port) }
        // An rdmig source with another key.
        let stranger = try migrate(port: port, key: try temporaryKeyFile())
        #expect(stranger.wait(timeout: 30) == 1)
        #expect((try stranger.report()["error-desc"] as? String ?? "").contains("the destination refused: authentication failed"))
        // ... and the real one gets through.
        let source = try migrate(port: port, key: key)
        #expect(source.wait(timeout: 60) == 0, "source stderr:\n\(source.stderr)\ndestination stderr:\n\(destination.stderr)")
        #expect(try source.report()["status"] as? String == "completed")
        #expect(destination.process.isRunning, "the destination must still serve; stderr:\n\(destination.stderr)")
        #expect(destination.stderr.contains("authentication failed: the peers do not share the pre-shared key"))
        let mappings = destination.stderr.components(separatedBy: "mapped and pinned").count - 1
        #expect(mappings == 1, "guest memory is mapped for the one authenticated source only:\n\(destination.stderr)")
        withExtendedLifetime((framed, idle)) {}
    }

    /// The audit's first finding: an unauthenticated peer sends a CHANNEL_SETUP the destination
    /// refuses, then SEND frames, which the old destination copied into its freed receive pool.
    /// Now it gets one 1 KiB handshake receive, a refused frame closes the connection before
    /// that buffer is freed, and nothing it sends afterwards is placed anywhere.
    @Test func framesFromARefusedPeerNeverReachFreedMemory() throws {
        let key = try temporaryKeyFile()
        let (destination, port) = try startDestination(key: key, extra: ["--keep-serving"])
        defer { destination.kill(); destination.wait(timeout: 10) }
        for _ in 0..<5 {
            let attacker = try RawPeer(port: port)
            attacker.send(RawPeer.preamble)
            attacker.send(RawPeer.sendFrame(RawPeer.channelSetupFrame(receiveBufferSize: 8), sequence: 1))
            var sequence: UInt64 = 2
            for _ in 0..<64 {
                guard attacker.send(RawPeer.sendFrame([UInt8](repeating: 0xA5, count: 900), sequence: sequence)) else { break }
                sequence += 1
            }
        }
        usleep(300_000)
        #expect(destination.process.isRunning, "the destination died; stderr:\n\(destination.stderr)")
        let source = try migrate(port: port, key: key)
        #expect(source.wait(timeout: 60) == 0, "source stderr:\n\(source.stderr)\ndestination stderr:\n\(destination.stderr)")
        #expect(destination.process.isRunning)
    }
}
