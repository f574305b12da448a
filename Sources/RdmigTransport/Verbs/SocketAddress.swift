#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address, as rdma_cm takes it (`struct sockaddr *`).
struct SocketAddress {
    var storage = sockaddr_storage()
    var length: socklen_t = 0

    var family: Int32 { Int32(storage.ss_family) }

    /// Resolves `endpoint` with getaddrinfo: numeric literals and host names, IPv4 and IPv6
    /// (IPv6 link-local scopes written `fe80::1%eth0`). `passive` resolves a missing or
    /// wildcard host for binding.
    static func resolve(_ endpoint: TransportEndpoint, passive: Bool) throws(TransportError) -> SocketAddress {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var results: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &results)
        guard status == 0, let first = results else {
            let reason = status == 0 ? "no address" : String(cString: gai_strerror(status))
            throw .unreachable(endpoint, reason: "cannot resolve '\(endpoint.host)': \(reason)")
        }
        defer { freeaddrinfo(first) }
        var address = SocketAddress()
        guard let source = first.pointee.ai_addr,
              Int(first.pointee.ai_addrlen) <= MemoryLayout<sockaddr_storage>.size
        else {
            throw .unreachable(endpoint, reason: "getaddrinfo returned no usable address for '\(endpoint.host)'")
        }
        withUnsafeMutableBytes(of: &address.storage) { target in
            target.copyMemory(from: UnsafeRawBufferPointer(start: source, count: Int(first.pointee.ai_addrlen)))
        }
        address.length = first.pointee.ai_addrlen
        return address
    }

    mutating func withSockaddr<Result>(_ body: (UnsafeMutablePointer<sockaddr>) -> Result) -> Result {
        withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0) }
        }
    }

    /// 127.0.0.0/8, ::1 and ::ffff:127.x: addresses that never reach an RDMA device.
    var isLoopback: Bool {
        var copy = self
        return copy.withSockaddr { SocketAddress.isLoopback(UnsafePointer($0)) }
    }

    /// 0.0.0.0 or ::, which rdma_cm binds on every RDMA device.
    var isWildcard: Bool {
        var copy = self
        return copy.withSockaddr { address in
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr == 0 }
            case AF_INET6:
                return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                    withUnsafeBytes(of: pointer.pointee.sin6_addr) { $0.allSatisfy { $0 == 0 } }
                }
            default:
                return false
            }
        }
    }

    static func isLoopback(_ address: UnsafePointer<sockaddr>) -> Bool {
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                UInt32(bigEndian: $0.pointee.sin_addr.s_addr) >> 24 == 127
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin6_addr) { bytes in
                    let isOne = bytes.prefix(15).allSatisfy { $0 == 0 } && bytes[15] == 1
                    let isMappedLoopback = bytes.prefix(10).allSatisfy { $0 == 0 }
                        && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127
                    return isOne || isMappedLoopback
                }
            }
        default:
            return false
        }
    }

    /// The numeric host and port of a socket address (what rdma_get_peer_addr returns).
    static func endpoint(from address: UnsafePointer<sockaddr>) -> TransportEndpoint? {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 16)
        switch Int32(address.pointee.sa_family) {
        case AF_INET:
            return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                var raw = pointer.pointee.sin_addr
                guard inet_ntop(AF_INET, &raw, &text, socklen_t(text.count)) != nil else { return nil }
                let host = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                return TransportEndpoint(host: host, port: UInt16(bigEndian: pointer.pointee.sin_port))
            }
        case AF_INET6:
            return address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                var raw = pointer.pointee.sin6_addr
                guard inet_ntop(AF_INET6, &raw, &text, socklen_t(text.count)) != nil else { return nil }
                var host = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                if pointer.pointee.sin6_scope_id != 0 {
                    var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
                    if if_indextoname(pointer.pointee.sin6_scope_id, &name) != nil {
                        host += "%" + name.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                    }
                }
                return TransportEndpoint(host: host, port: UInt16(bigEndian: pointer.pointee.sin6_port))
            }
        default:
            return nil
        }
    }
}
