#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem
import RdmigTransport

/// The baseline for `rdmig bench transport`: the plainest TCP sender and receiver, a
/// `write()` loop of message-size chunks into a socket and a `read()` loop out of it, with the
/// kernel's default socket options (autotuned buffers). What a transport adds on top of TCP
/// is measured against this in the same run.
public enum PlainSocketPump {
    /// A listening socket on `host` with a kernel-chosen port.
    public static func listen(host: String) throws(SystemCallError) -> (descriptor: Int32, port: UInt16) {
        let address = try resolve(host: host, port: 0, passive: true)
        let descriptor = try SystemCall.check("socket") { socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        try address.withSockaddr { pointer, length throws(SystemCallError) in
            try SystemCall.check("bind", context: "\(host)") { bind(descriptor, pointer, length) }
        }
        try SystemCall.check("listen") { Glibc.listen(descriptor, 16) }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try withUnsafeMutablePointer(to: &storage) { pointer throws(SystemCallError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SystemCallError) in
                try SystemCall.check("getsockname") { getsockname(descriptor, raw, &length) }
            }
        }
        let port = withUnsafeBytes(of: storage) { bytes in
            // sin_port and sin6_port share the offset after the family field.
            UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        }
        return (descriptor, port)
    }

    /// Receives `total` bytes from the next connection, then answers one byte.
    public static func serve(listener: Int32, total: UInt64, messageSize: Int) throws(SystemCallError) {
        let connection = try SystemCall.check("accept") { accept4(listener, nil, nil, Int32(SOCK_CLOEXEC.rawValue)) }
        defer { close(connection) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: messageSize, alignment: 4096)
        defer { buffer.deallocate() }
        var received: UInt64 = 0
        while received < total {
            let want = Int(min(UInt64(messageSize), total - received))
            let count = try SystemCall.check("read", context: "plain pump receiver") { read(connection, buffer.baseAddress, want) }
            if count == 0 { throw SystemCallError(call: "read", errno: ECONNRESET, context: "plain pump sender closed after \(received) bytes") }
            received += UInt64(count)
        }
        var answer: UInt8 = 1
        try SystemCall.check("write") { write(connection, &answer, 1) }
    }

    /// Sends `total` bytes in `messageSize` writes and waits for the answer; returns the time.
    public static func run(to endpoint: TransportEndpoint, total: UInt64, messageSize: Int) throws(SystemCallError) -> Duration {
        let address = try resolve(host: endpoint.host, port: endpoint.port, passive: false)
        let descriptor = try SystemCall.check("socket") { socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(descriptor) }
        try address.withSockaddr { pointer, length throws(SystemCallError) in
            try SystemCall.check("connect", context: "\(endpoint)") { connect(descriptor, pointer, length) }
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: messageSize, alignment: 4096)
        defer { buffer.deallocate() }
        for index in 0..<messageSize { buffer[index] = UInt8(truncatingIfNeeded: index &* 7 &+ 1) }
        let clock = ContinuousClock()
        let start = clock.now
        var sent: UInt64 = 0
        while sent < total {
            let want = Int(min(UInt64(messageSize), total - sent))
            var offset = 0
            while offset < want {
                let count = try SystemCall.check("write", context: "plain pump sender") {
                    send(descriptor, buffer.baseAddress! + offset, want - offset, Int32(MSG_NOSIGNAL))
                }
                offset += count
            }
            sent += UInt64(want)
        }
        var answer: UInt8 = 0
        let count = try SystemCall.check("read") { read(descriptor, &answer, 1) }
        if count != 1 { throw SystemCallError(call: "read", errno: ECONNRESET, context: "plain pump receiver closed before answering") }
        return clock.now - start
    }

    struct ResolvedAddress {
        var family: Int32
        var storage: sockaddr_storage
        var length: socklen_t

        func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemCallError) -> T) throws(SystemCallError) -> T {
            var copy = storage
            return try withUnsafePointer(to: &copy) { pointer throws(SystemCallError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw throws(SystemCallError) in try body(raw, length) }
            }
        }
    }

    static func resolve(host: String, port: UInt16, passive: Bool) throws(SystemCallError) -> ResolvedAddress {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = passive ? AI_PASSIVE : 0
        var result: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, String(port), &hints, &result)
        guard status == 0, let first = result else {
            throw SystemCallError(call: "getaddrinfo", errno: EINVAL, context: "\(host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(result) }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen)))
        }
        return ResolvedAddress(family: first.pointee.ai_family, storage: storage, length: first.pointee.ai_addrlen)
    }
}
