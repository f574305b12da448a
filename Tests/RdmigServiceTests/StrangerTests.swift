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

/// A man in the middle after the handshake: relays a source's tcp connection to the
/// destination frame by frame and rewrites one frame the way an attacker on the path would —
/// one bit of the first control message after the channel setup (LAYOUT), with the CRC-32C
/// fixed up, or one bit of a page in a large WRITE of the first pass.
final class TamperingRelay: @unchecked Sendable {
    enum Target: Sendable {
        case layoutMessage, pagePayload
        /// Cuts the first connection where the source's COMMIT would pass (COMMIT is not
        /// delivered; both ends see the connection go): later connections pass untouched.
        case cutAtCommit
        /// Stops forwarding anything, both ways, from the source's SWITCHOVER on, with the
        /// connection left open: a link that goes dead during stop-and-copy.
        case freezeAtSwitchover
        /// The same from the first page WRITE on: a link that goes dead in pre-copy.
        case freezeInPreCopy
        /// Changes nothing; counts synthetic guest pages seen in plain text on the wire.
        case observe
    }
    private let observed = NSCondition()
    private var plaintextPages = 0

    /// Synthetic guest pages seen in plain text (`.observe`): word j of a page is
    /// base ^ (j × golden), so words 2 and 3 XOR to a constant whatever the page and version.
    var plaintextPagesSeen: Int { observed.lock(); defer { observed.unlock() }; return plaintextPages }

    static func countPlaintextPages(_ payload: [UInt8]) -> Int {
        let golden: UInt64 = 0x9E37_79B9_7F4A_7C15
        let signature = (2 &* golden) ^ (3 &* golden)
        guard payload.count >= 4096 else { return 0 }
        return payload.withUnsafeBytes { bytes in
            var count = 0
            var offset = 0
            while offset + 4096 <= bytes.count {
                let word2 = bytes.loadUnaligned(fromByteOffset: offset + 16, as: UInt64.self)
                let word3 = bytes.loadUnaligned(fromByteOffset: offset + 24, as: UInt64.self)
                if word2 ^ word3 == signature { count += 1 }
                offset += 4096
            }
            return count
        }
    }
    private let frozen = NSCondition()
    private var isFrozen = false

    let port: UInt16
    private let listenFD: Int32
    private let target: Target
    private let destinationPort: UInt16
    private let tampered = NSCondition()
    private var didTamper = false

    init(to destinationPort: UInt16, target: Target) throws {
        self.destinationPort = destinationPort
        self.target = target
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        listenFD = fd
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw ProcessFailure("relay: cannot listen (errno \(errno))") }
        port = UInt16(bigEndian: address.sin_port)
        Thread.detachNewThread { self.serve() }
    }

    deinit { close(listenFD) }

    var tamperedWithAFrame: Bool { tampered.lock(); defer { tampered.unlock() }; return didTamper }

    private func serve() {
        var first = true
        while true {
            let client = accept(listenFD, nil, nil)
            guard client >= 0 else { return }
            let tamper = first
            first = false
            Thread.detachNewThread { self.relay(client, tamper: tamper) }
        }
    }

    private func relay(_ client: Int32, tamper: Bool) {
        guard let server = try? RawPeer(port: destinationPort) else {
            close(client)
            return
        }
        let serverFD = server.fd
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = recv(serverFD, &buffer, buffer.count, 0)
                self.frozen.lock()
                let stop = self.isFrozen
                self.frozen.unlock()
                if stop { sleep(120); break }
                if count <= 0 || !Self.sendAll(client, Array(buffer[0..<count])) { break }
            }
            shutdown(client, Int32(SHUT_WR))
        }
        defer {
            shutdown(serverFD, Int32(SHUT_WR))
            close(client)
            withExtendedLifetime(server) {}
        }
        guard let preamble = Self.receive(client, 16), Self.sendAll(serverFD, preamble) else { return }
        var sends = 0
        // The link burst at setup writes pages the first pass overwrites: the page targets
        // wait for the first pass's writes, which come after a SEND that follows a large
        // WRITE (the control channel's credit writes are small).
        var sawWrite = false, pagesFlow = false
        while true {
            guard let header = Self.receive(client, 32) else { return }
            let kind = header[0]
            var length = [1, 2, 4].contains(kind) ? Int(header[16]) | Int(header[17]) << 8 | Int(header[18]) << 16 | Int(header[19]) << 24 : 0
            // An encrypted WRITE or SEND carries a 16-byte tag after its payload.
            if kind == 1 || kind == 2, header[1] & 4 != 0 { length += 16 }
            guard var payload = length == 0 ? [] : Self.receive(client, length) else { return }
            if kind == 2 { sends += 1 }
            if kind == 2 && sawWrite { pagesFlow = true }
            if kind == 1 && payload.count >= 4096 { sawWrite = true }
            if case .observe = target, kind == 1 {
                let pages = Self.countPlaintextPages(payload)
                observed.lock()
                plaintextPages += pages
                observed.unlock()
            }
            tampered.lock()
            let freezeHere: Bool
            switch target {
            case .freezeAtSwitchover: freezeHere = kind == 2 && payload.count >= 8 && payload[6] == 9 && payload[7] == 0
            case .freezeInPreCopy: freezeHere = pagesFlow && kind == 1 && payload.count >= 4096
            default: freezeHere = false
            }
            if tamper, !didTamper, freezeHere {
                didTamper = true
                tampered.unlock()
                frozen.lock()
                isFrozen = true
                frozen.unlock()
                // Hold both sockets open and move nothing until the test ends.
                sleep(120)
                return
            }
            if tamper, !didTamper, case .cutAtCommit = target, kind == 2, payload.count >= 8, payload[6] == 14, payload[7] == 0 {
                didTamper = true
                tampered.unlock()
                // The link goes: neither side hears from the other on this connection again.
                shutdown(client, Int32(SHUT_RDWR))
                shutdown(serverFD, Int32(SHUT_RDWR))
                return
            }
            if tamper, !didTamper {
                switch target {
                case .layoutMessage where kind == 2 && sends == 4 && payload.count > 32:
                    // HELLO, AUTH, CHANNEL_SETUP, then LAYOUT: flip a bit of its payload and fix
                    // the CRC-32C, as anyone on the path can.
                    payload[16] ^= 0x01
                    let checksum = payload[16..<(payload.count - 16)].withUnsafeBytes { CRC32C.checksum($0) }
                    withUnsafeBytes(of: checksum.littleEndian) { payload.replaceSubrange(12..<16, with: $0) }
                    didTamper = true
                case .pagePayload where pagesFlow && kind == 1 && payload.count >= 4096:
                    payload[payload.count / 2] ^= 0x01
                    didTamper = true
                default:
                    break
                }
            }
            tampered.unlock()
            guard Self.sendAll(serverFD, header + payload) else { return }
        }
    }

    static func receive(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = bytes[offset...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got <= 0 { return nil }
            offset += got
        }
        return bytes
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }
}

/// With `--encrypt on` (or `auto` between hosts) no guest page crosses the tcp backend in
/// plain text, and whoever rewrites a byte on the path is caught by the transport itself.
@Suite(.serialized) struct Encryption {
    func migrate(through target: TamperingRelay.Target, encrypt: String) throws -> (source: RdmigProcess, destination: RdmigProcess, relay: TamperingRelay) {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "--encrypt", encrypt])
        let relay = try TamperingRelay(to: try destination.listeningPort(), target: target)
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(relay.port)", "--json", "--key-file", key, "--backend", "tcp",
                                       "--encrypt", encrypt, "--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB"])
        return (source, destination, relay)
    }

    @Test func pagesCrossInPlainTextOnlyWhenEncryptionIsOff() throws {
        let (plainSource, plainDestination, plainRelay) = try migrate(through: .observe, encrypt: "off")
        #expect(plainSource.wait(timeout: 60) == 0, "\(plainSource.stderr)")
        plainDestination.wait(timeout: 30)
        #expect(try plainSource.report()["encrypted"] as? Bool == false)
        // The check itself works: pages are visible when nothing encrypts them.
        #expect(plainRelay.plaintextPagesSeen > 100, "\(plainRelay.plaintextPagesSeen) plain pages seen")

        let (source, destination, relay) = try migrate(through: .observe, encrypt: "on")
        #expect(source.wait(timeout: 60) == 0, "\(source.stderr)")
        #expect(destination.wait(timeout: 30) == 0, "\(destination.stderr)")
        let report = try source.report()
        #expect(report["encrypted"] as? Bool == true && report["verified"] as? Bool == true, "\(report)")
        #expect(try destination.report()["encrypted"] as? Bool == true)
        #expect(relay.plaintextPagesSeen == 0, "\(relay.plaintextPagesSeen) pages crossed in plain text")
    }

    @Test func aRewrittenEncryptedPageTearsTheConnectionDownAndTheGuestStaysOnTheSource() throws {
        let (source, destination, relay) = try migrate(through: .pagePayload, encrypt: "on")
        defer { destination.kill(); destination.wait(timeout: 10) }
        #expect(source.wait(timeout: 60) == 1, "\(source.stderr)")
        #expect(relay.tamperedWithAFrame)
        let report = try source.report()
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        _ = try destination.waitForLine(containing: "failed authentication", timeout: 10)
    }

    @Test func autoEncryptsOnlyOffLoopbackAndEitherSideAskingTurnsItOn() throws {
        // Loopback with auto on both sides: off (nothing leaves the host).
        let (source, destination, _) = try migrate(through: .observe, encrypt: "auto")
        #expect(source.wait(timeout: 60) == 0, "\(source.stderr)")
        destination.wait(timeout: 30)
        #expect(try source.report()["encrypted"] as? Bool == false)
        // One side on, the other off: on for both.
        let key = try temporaryKeyFile()
        let onlyDestination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "--encrypt", "on"])
        let port = try onlyDestination.listeningPort()
        let offSource = try RdmigProcess(["source", "--connect", "127.0.0.1:\(port)", "--json", "--key-file", key, "--encrypt", "off",
                                          "--guest-size", "32MiB"])
        #expect(offSource.wait(timeout: 60) == 0, "\(offSource.stderr)")
        #expect(try offSource.report()["encrypted"] as? Bool == true)
        onlyDestination.wait(timeout: 30)
    }
}

/// After a genuine handshake, someone on the path rewrites what passes: the destination
/// detects it, nothing runs there, and the guest stays on the source.
@Suite(.serialized) struct ManInTheMiddle {
    func migrateThrough(_ target: TamperingRelay.Target) throws -> (source: [String: Any], destination: RdmigProcess, relay: TamperingRelay) {
        let key = try temporaryKeyFile()
        let destination = try RdmigProcess(["dest", "--listen", "127.0.0.1:0", "--json", "--key-file", key, "--keep-serving"])
        let port = try destination.listeningPort()
        let relay = try TamperingRelay(to: port, target: target)
        let source = try RdmigProcess(["source", "--connect", "127.0.0.1:\(relay.port)", "--json", "--key-file", key,
                                       "--guest-size", "64MiB", "--dirty-rate", "16MiB/s", "--working-set", "16MiB", "--backend", "tcp"])
        #expect(source.wait(timeout: 60) == 1, "source stderr:\n\(source.stderr)")
        return (try source.report(), destination, relay)
    }

    @Test func aRewrittenControlMessageWithAValidChecksumFailsItsMAC() throws {
        let (report, destination, relay) = try migrateThrough(.layoutMessage)
        defer { destination.kill(); destination.wait(timeout: 10) }
        #expect(relay.tamperedWithAFrame)
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        let line = try destination.waitForLine(containing: "control frame authentication failed", timeout: 10)
        #expect(line.contains("nothing runs here") || destination.stderr.contains("nothing runs here"), "\(destination.stderr)")
    }

    @Test func aRewrittenPageFailsVerificationAndNothingRunsOnTheDestination() throws {
        let (report, destination, relay) = try migrateThrough(.pagePayload)
        defer { destination.kill(); destination.wait(timeout: 10) }
        #expect(relay.tamperedWithAFrame)
        #expect(report["guest-location"] as? String == "source (resumed)", "\(report)")
        #expect((report["error-desc"] as? String ?? "").contains("memory differs"), "\(report)")
        _ = try destination.waitForLine(containing: "nothing runs here", timeout: 10)
    }
}
