#if canImport(Glibc)
import Glibc
#endif
import CRdmigShims
import RdmigSystem

/// A connected QMP unix socket. Owns the descriptor; `shutdown()` wakes a reader blocked on it
/// (read returns 0), the descriptor itself is closed when the last owner lets go.
final class QMPSocket: Sendable {
    let fileDescriptor: Int32
    let path: String

    private init(fileDescriptor: Int32, path: String) {
        self.fileDescriptor = fileDescriptor
        self.path = path
    }

    deinit { close(fileDescriptor) }

    /// Connects without waiting: a unix socket whose listener's backlog is full answers EAGAIN
    /// at once instead of blocking. QEMU accepts one QMP client at a time and leaves the next
    /// ones in the backlog without a greeting, so "busy" is only certain once the greeting is
    /// late (QMPClient.connect); EAGAIN here is the same situation with a full backlog.
    static func connect(to path: String) throws(QMPError) -> QMPSocket {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !pathBytes.isEmpty, pathBytes.count < capacity else {
            throw .misuse("QMP socket path \(path) is \(pathBytes.count) bytes; a unix socket path must be 1-\(capacity - 1): use a shorter path")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let descriptor = Glibc.socket(
            AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard descriptor >= 0 else {
            throw .system(SystemCallError(call: "socket", errno: SystemCall.currentErrno(), context: "QMP socket \(path)"))
        }
        let socket = QMPSocket(fileDescriptor: descriptor, path: path)
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + 1)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, length) }
        }
        if result != 0 {
            let error = SystemCall.currentErrno()
            switch error {
            case ENOENT: throw .socketMissing(path: path)
            case ECONNREFUSED: throw .nobodyListening(path: path)
            case EAGAIN: throw .busy(path: path, waited: .zero)
            default: throw .system(SystemCallError(call: "connect", errno: error, context: "QMP socket \(path)"))
            }
        }
        // Blocking from here on: the reader thread sleeps in read(), writes are short.
        let flags = fcntl(descriptor, F_GETFL)
        _ = fcntl(descriptor, F_SETFL, flags & ~Int32(O_NONBLOCK))
        return socket
    }

    /// Sends one message. With `fd`, the descriptor rides as SCM_RIGHTS on the first sendmsg:
    /// QEMU's `getfd` takes the descriptor that arrived with the command's own bytes
    /// (monitor/fds.c reads it from the chardev's last received fds), so the message and the
    /// descriptor must travel together.
    func send(_ bytes: [UInt8], passing fd: Int32?) throws(QMPError) {
        var offset = 0
        if let fd {
            let sent = bytes.withUnsafeBytes { raw in
                rdmig_send_with_fd(fileDescriptor, raw.baseAddress, raw.count, fd)
            }
            if sent < 0 { throw failure(errno: Int32(-sent), call: "sendmsg(SCM_RIGHTS)") }
            offset = sent
        }
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                Glibc.send(fileDescriptor, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                throw failure(errno: error, call: "send")
            }
            offset += sent
        }
    }

    /// Blocking read; 0 at end of stream (QEMU closed, or `shutdown()` was called).
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(QMPError) -> Int {
        while true {
            let count = Glibc.read(fileDescriptor, buffer.baseAddress, buffer.count)
            if count >= 0 { return count }
            let error = SystemCall.currentErrno()
            if error == EINTR { continue }
            throw failure(errno: error, call: "read")
        }
    }

    func shutdown() {
        _ = Glibc.shutdown(fileDescriptor, Int32(SHUT_RDWR))
    }

    private func failure(errno error: Int32, call: String) -> QMPError {
        if error == EPIPE || error == ECONNRESET {
            return .disconnected(path: path, detail: "(\(call): \(SystemCallError.name(of: error)))")
        }
        return .system(SystemCallError(call: call, errno: error, context: "QMP socket \(path)"))
    }
}
