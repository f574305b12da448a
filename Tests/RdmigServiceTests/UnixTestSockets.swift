#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Results set from other threads in a test.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Bool?]
    init(count: Int) { storage = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Bool) { lock.withLock { storage[index] = value } }
    func isSet(_ index: Int) -> Bool { lock.withLock { storage[index] == true } }
    var values: [Bool?] { lock.withLock { storage } }
}

/// One end of a unix stream connection, blocking unless told otherwise.
final class UnixConnection: @unchecked Sendable {
    private(set) var fd: Int32

    init(fd: Int32) { self.fd = fd }

    convenience init(connectingTo path: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = UnixConnection.address(path)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard result == 0 else {
            let error = errno
            Glibc.close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EIO)
        }
        self.init(fd: fd)
    }

    deinit { close() }

    static func address(_ path: String) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Writes all of `data`; false when the connection refused (EPIPE, ECONNRESET).
    @discardableResult
    func write(_ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let result = send(fd, raw.baseAddress! + done, raw.count - done, Int32(MSG_NOSIGNAL))
                if result < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                done += result
            }
            return true
        }
    }

    /// Reads until end of file (or an error, or `timeout`).
    func readToEnd(timeout: TimeInterval = 10) -> Data {
        var result = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let deadline = Date(timeIntervalSinceNow: timeout)
        while Date() < deadline {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 100) >= 0 else { break }
            if entry.revents == 0 { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            result.append(contentsOf: buffer[0..<count])
        }
        return result
    }

    func echo() {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            if !write(Data(buffer[0..<count])) { return }
        }
        shutdownWrite()
    }

    /// Writes `data` on another thread while reading the answer to its end.
    func exchange(_ data: Data, shutdownAfterWriting: Bool) -> Data {
        let writer = Thread { [self] in
            write(data)
            if shutdownAfterWriting { shutdownWrite() }
        }
        writer.start()
        return readToEnd(timeout: 20)
    }

    /// One write and one read of up to as many bytes.
    func exchangeOnce(_ data: Data) -> Data {
        write(data)
        var result = Data()
        var buffer = [UInt8](repeating: 0, count: data.count)
        while result.count < data.count {
            let count = recv(fd, &buffer, data.count - result.count, 0)
            if count <= 0 { break }
            result.append(contentsOf: buffer[0..<count])
        }
        return result
    }

    /// Non-blocking writes until none goes through for `quiet` seconds (or `limit` passed);
    /// returns how many bytes went.
    func writeUntilBlocked(_ data: Data, quiet: TimeInterval, limit: TimeInterval) -> Int {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let end = Date(timeIntervalSinceNow: limit)
        var done = 0
        var lastProgress = Date()
        data.withUnsafeBytes { raw in
            while done < raw.count && Date() < end && Date().timeIntervalSince(lastProgress) < quiet {
                let result = send(fd, raw.baseAddress! + done, min(64 << 10, raw.count - done), Int32(MSG_NOSIGNAL))
                if result > 0 {
                    done += result
                    lastProgress = Date()
                } else {
                    usleep(5_000)
                }
            }
        }
        return done
    }

    func setBlocking() {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    }
}

/// A unix stream server run by a test: each accepted connection goes to `handler` on its own
/// thread and is closed when the handler returns.
final class UnixServer: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let lock = NSCondition()
    private var finished = 0
    private var stopped = false

    init(path: String, handler: @escaping @Sendable (UnixConnection) -> Void) throws {
        self.path = path
        unlink(path)
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = UnixConnection.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let thread = Thread { [self] in
            while true {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&entry, 1, 100)
                if lock.withLock({ stopped }) { return }
                guard entry.revents != 0 else { continue }
                let accepted = accept(fd, nil, nil)
                guard accepted >= 0 else { continue }
                Thread { [self] in
                    let connection = UnixConnection(fd: accepted)
                    handler(connection)
                    connection.close()
                    lock.withLock {
                        finished += 1
                        lock.broadcast()
                    }
                }.start()
            }
        }
        thread.start()
    }

    func waitForHandlers(count: Int, timeout: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.lock()
        defer { lock.unlock() }
        while finished < count {
            if !lock.wait(until: deadline) { return finished >= count }
        }
        return true
    }

    func stop() {
        lock.withLock { stopped = true }
        usleep(150_000)
        close(fd)
        unlink(path)
    }
}
