#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// The unix stream sockets at the two ends of a proxy: the source host's listening socket
/// (where QEMU or libvirt connects) and the destination host's (QEMU's `-incoming unix:`).
enum UnixStreamSocket {
    /// A listening socket at `path`; a stale socket file left there is replaced, any other
    /// file is not.
    static func listen(at path: String, backlog: Int32 = 64) throws(SystemCallError) -> Int32 {
        var address = try Self.address(path)
        var status = stat()
        if lstat(path, &status) == 0 {
            guard (status.st_mode & S_IFMT) == S_IFSOCK else {
                throw SystemCallError(call: "bind", errno: EEXIST, context: "\(path) exists and is not a socket")
            }
            unlink(path)
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SystemCallError(call: "socket", errno: SystemCall.currentErrno(), context: "unix socket \(path)") }
        let bound = withUnsafePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, address.length) }
        }
        if bound != 0 || Glibc.listen(descriptor, backlog) != 0 {
            let error = SystemCall.currentErrno()
            Glibc.close(descriptor)
            throw SystemCallError(call: bound != 0 ? "bind" : "listen", errno: error, context: "unix socket \(path)")
        }
        return descriptor
    }

    /// A connection accepted on `listener`, or nil when none came within `timeout`.
    static func accept(_ listener: Int32, timeout: Duration) throws(SystemCallError) -> Int32? {
        var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        let ready = poll(&entry, 1, Int32(max(0, timeout.milliseconds)))
        if ready < 0 {
            let error = SystemCall.currentErrno()
            if error == EINTR { return nil }
            throw SystemCallError(call: "poll", errno: error, context: "waiting for connections on the proxy's unix socket")
        }
        guard ready > 0 else { return nil }
        let descriptor = Glibc.accept(listener, nil, nil)
        guard descriptor >= 0 else {
            let error = SystemCall.currentErrno()
            if error == EINTR || error == EAGAIN || error == ECONNABORTED { return nil }
            throw SystemCallError(call: "accept", errno: error, context: "the proxy's unix socket")
        }
        // accept4 is not in Swift's Glibc module; a child started meanwhile may inherit it.
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        return descriptor
    }

    /// A blocking connection to the listener at `path`.
    static func connect(to path: String) throws(SystemCallError) -> Int32 {
        var address = try Self.address(path)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SystemCallError(call: "socket", errno: SystemCall.currentErrno(), context: "unix socket \(path)") }
        while true {
            let result = withUnsafePointer(to: &address.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, address.length) }
            }
            if result == 0 { return descriptor }
            let error = SystemCall.currentErrno()
            if error == EINTR { continue }
            Glibc.close(descriptor)
            throw SystemCallError(call: "connect", errno: error, context: "unix socket \(path)")
        }
    }

    private static func address(_ path: String) throws(SystemCallError) -> (storage: sockaddr_un, length: socklen_t) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw SystemCallError(call: "bind", errno: ENAMETOOLONG, context: "unix socket path \(path) is \(bytes.count) bytes; at most \(capacity - 1)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return (address, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1))
    }
}
