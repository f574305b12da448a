#if canImport(Glibc)
import Glibc
#endif
import CRdmigShims
import Foundation
import RdmigQEMU
import RdmigSystem

/// A stand-in for QEMU's QMP socket: listens on a unix socket in a fresh temporary folder,
/// accepts one client and plays a script against it on its own thread (blocking I/O, like
/// QEMU's monitor from the client's point of view).
final class FakeQMPServer: Sendable {
    let directory: String
    let path: String
    let listener: Int32

    struct ScriptError: Error, CustomStringConvertible {
        let description: String
    }

    /// `listening: false` binds the path and closes the socket: a stale socket file.
    init(listening: Bool = true) throws {
        var template = Array("/tmp/rdmig-qmp-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ScriptError(description: "mkdtemp failed") }
        let directory = String(cString: made)
        let path = directory + "/qmp.sock"
        self.directory = directory
        self.path = path
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw ScriptError(description: "bind \(path): errno \(errno)") }
        if listening {
            guard listen(descriptor, 4) == 0 else { throw ScriptError(description: "listen: errno \(errno)") }
            listener = descriptor
        } else {
            close(descriptor)
            listener = -1
        }
    }

    deinit {
        if listener >= 0 { close(listener) }
        unlink(path)
        rmdir(directory)
    }

    /// Accepts one client and runs `script` on a dedicated thread; await the result to see the
    /// script's own failures (an unexpected command, a timeout).
    func serve(_ script: @escaping @Sendable (FakeQMPPeer) throws -> Void) -> Task<Void, any Error> {
        let listener = listener
        return Task {
            try await DedicatedThread.run(name: "fake-qmp") {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { throw ScriptError(description: "accept: errno \(errno)") }
                // A guest started meanwhile (posix_spawn in the QEMU tests) must not inherit it:
                // a copy in another process would keep the connection open after close().
                _ = fcntl(client, F_SETFD, FD_CLOEXEC)
                let peer = FakeQMPPeer(fd: client)
                defer { peer.close() }
                try script(peer)
            }
        }
    }
}

/// The server's end of one QMP connection.
final class FakeQMPPeer: @unchecked Sendable {
    private(set) var fd: Int32
    private var buffer: [UInt8] = []
    private var receivedDescriptors: [Int32] = []

    init(fd: Int32) { self.fd = fd }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func send(_ line: String) throws {
        let bytes = Array((line + "\r\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw FakeQMPServer.ScriptError(description: "send: errno \(errno)") }
            offset += sent
        }
    }

    func send(_ value: QMPValue) throws { try send(value.jsonString) }

    func greet(version: (Int, Int, Int) = (10, 0, 2)) throws {
        try send(#"{"QMP": {"version": {"qemu": {"micro": \#(version.2), "minor": \#(version.1), "major": \#(version.0)}, "package": "fake"}, "capabilities": ["oob"]}}"#)
    }

    /// Greeting, then answers qmp_capabilities.
    func negotiate() throws {
        try greet()
        let request = try expect("qmp_capabilities")
        try reply(to: request, .object([:]))
    }

    struct Request {
        let command: String
        let id: QMPValue?
        let arguments: QMPValue?
        /// A descriptor that arrived (SCM_RIGHTS) with this request's bytes.
        let descriptor: Int32?
    }

    /// The next request line, with any descriptor received while reading it.
    func receive(timeout: Duration = .seconds(5)) throws -> Request {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeFirst(newline + 1)
                let message = try QMPValue(json: Data(line))
                let descriptor = receivedDescriptors.isEmpty ? nil : receivedDescriptors.removeFirst()
                guard let command = message["execute"]?.stringValue else {
                    throw FakeQMPServer.ScriptError(description: "not a command: \(message)")
                }
                return Request(command: command, id: message["id"], arguments: message["arguments"], descriptor: descriptor)
            }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw FakeQMPServer.ScriptError(description: "no request within \(timeout)") }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
            if poll(&descriptor, 1, Int32(max(1, milliseconds))) <= 0 { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            var received: Int32 = -1
            let count = chunk.withUnsafeMutableBytes { rdmig_receive_with_fd(fd, $0.baseAddress, $0.count, &received) }
            if count == -Int(EAGAIN) || count == -Int(EINTR) { continue }
            guard count > 0 else { throw FakeQMPServer.ScriptError(description: "client closed the connection (\(count))") }
            if received >= 0 { receivedDescriptors.append(received) }
            buffer.append(contentsOf: chunk[..<count])
        }
    }

    func expect(_ command: String) throws -> Request {
        let request = try receive()
        guard request.command == command else {
            throw FakeQMPServer.ScriptError(description: "expected \(command), got \(request.command)")
        }
        return request
    }

    func reply(to request: Request, _ value: QMPValue) throws {
        var message: [String: QMPValue] = ["return": value]
        if let id = request.id { message["id"] = id }
        try send(.object(message))
    }

    func fail(_ request: Request, errorClass: String, description: String) throws {
        var message: [String: QMPValue] = ["error": ["class": .string(errorClass), "desc": .string(description)]]
        if let id = request.id { message["id"] = id }
        try send(.object(message))
    }

    func event(_ name: String, data: QMPValue? = nil, seconds: Int64 = 1_700_000_000, microseconds: Int64 = 0) throws {
        var message: [String: QMPValue] = [
            "event": .string(name), "timestamp": ["seconds": .int(seconds), "microseconds": .int(microseconds)],
        ]
        if let data { message["data"] = data }
        try send(.object(message))
    }
}
