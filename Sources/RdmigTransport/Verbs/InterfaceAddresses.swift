#if canImport(Glibc)
import Glibc
#endif

/// Interface addresses from getifaddrs.
enum InterfaceAddresses {
    static func ipv4(of interfaces: [String]) -> [String] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0, let first = head else { return [] }
        defer { freeifaddrs(first) }
        var byInterface: [String: [String]] = [:]
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            cursor = entry.pointee.ifa_next
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
                  let name = entry.pointee.ifa_name
            else { continue }
            let interface = String(cString: name)
            guard interfaces.contains(interface),
                  let endpoint = SocketAddress.endpoint(from: UnsafePointer(address))
            else { continue }
            byInterface[interface, default: []].append(endpoint.host)
        }
        return interfaces.flatMap { byInterface[$0] ?? [] }
    }
}
