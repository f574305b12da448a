#if canImport(Glibc)
import Glibc
#endif
import RdmigSystem

/// The socket calls of the `tcp` backend, each turning errno into a `TransportError` that
/// names the endpoint. Only the control path (listen, accept, connect, preamble) is here;
/// the data path calls sendmsg/recv directly in `TCPSender` and `TCPReceiver`.
enum TCPSocket {
    /// SO_SNDBUFFORCE / SO_RCVBUFFORCE (include/uapi/asm-generic/socket.h): with CAP_NET_ADMIN
    /// they pass net.core.wmem_max / rmem_max (4 MiB here), which cap the plain options.
    static let sendBufferForce: Int32 = 32
    static let receiveBufferForce: Int32 = 33

    struct Address {
        var storage = sockaddr_storage()
        var length: socklen_t = 0
        var family: Int32 { Int32(storage.ss_family) }
    }

    static func resolve(_ endpoint: TransportEndpoint, passive: Bool) throws(TransportError) -> [Address] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard status == 0, let list else {
            throw .unreachable(endpoint, reason: "cannot resolve '\(endpoint.host)': \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var addresses: [Address] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let info = cursor {
            if let source = info.pointee.ai_addr, info.pointee.ai_family == AF_INET || info.pointee.ai_family == AF_INET6 {
                var address = Address()
                address.length = info.pointee.ai_addrlen
                withUnsafeMutableBytes(of: &address.storage) { target in
                    target.copyMemory(from: UnsafeRawBufferPointer(start: source, count: Int(info.pointee.ai_addrlen)))
                }
                addresses.append(address)
            }
            cursor = info.pointee.ai_next
        }
        guard !addresses.isEmpty else { throw .unreachable(endpoint, reason: "'\(endpoint.host)' has no IPv4 or IPv6 address") }
        return addresses
    }

    /// A bound, listening socket and the endpoint it actually got.
    static func listen(on endpoint: TransportEndpoint, bufferBytes: Int?) throws(TransportError) -> (Int32, TransportEndpoint) {
        let address = try resolve(endpoint, passive: true)[0]
        let fd = try check("socket", endpoint) { socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do throws(TransportError) {
            // SO_REUSEADDR only lets a new listener take a port whose old connections linger in
            // TIME_WAIT; a port another socket listens on still fails with EADDRINUSE on Linux.
            try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, endpoint)
            // Set before listen(): accepted sockets inherit the buffers, and the window scale
            // is chosen from the receive buffer at the handshake.
            try configureBuffers(fd, bytes: bufferBytes, endpoint)
            var bound = address
            let result = withUnsafePointer(to: &bound.storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, bound.length) }
            }
            if result != 0 {
                let error = SystemCall.currentErrno()
                let advice = error == EADDRINUSE ? "the port is in use: choose another port or 0 for a free one"
                    : error == EADDRNOTAVAIL ? "the address is not one of this machine's" : "check the address"
                throw TransportError.system(SystemCallError(call: "bind", errno: error, context: "listen on \(endpoint): \(advice)"))
            }
            try check("listen", endpoint) { Glibc.listen(fd, 128) }
            return (fd, try localEndpoint(of: fd))
        } catch {
            Glibc.close(fd)
            throw error
        }
    }

    /// Connects within `deadline`; the socket comes back blocking, configured for the data path.
    static func connect(
        to endpoint: TransportEndpoint, deadline: ContinuousClock.Instant, timeout: Duration, trafficClass: UInt8? = nil,
        bufferBytes: Int?
    ) throws(TransportError) -> Int32 {
        let addresses = try resolve(endpoint, passive: false)
        var lastError: TransportError = .unreachable(endpoint, reason: "no address to connect to")
        for address in addresses {
            let fd = try check("socket", endpoint) {
                socket(address.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            }
            do throws(TransportError) {
                try configureBuffers(fd, bytes: bufferBytes, endpoint)
                var target = address
                let result = withUnsafePointer(to: &target.storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, target.length) }
                }
                var error: Int32 = result == 0 ? 0 : SystemCall.currentErrno()
                if error == EINPROGRESS || error == EINTR {
                    guard try waitFor(fd, events: Int16(POLLOUT), until: deadline, endpoint) else {
                        throw TransportError.timedOut(operation: "connect to \(endpoint)", after: timeout)
                    }
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    error = 0
                    try check("getsockopt(SO_ERROR)", endpoint) { getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) }
                }
                switch error {
                case 0: break
                case ECONNREFUSED: throw TransportError.connectionRefused(endpoint)
                case ETIMEDOUT: throw TransportError.timedOut(operation: "connect to \(endpoint)", after: timeout)
                case ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, EAFNOSUPPORT:
                    throw TransportError.unreachable(endpoint, reason: "\(String(cString: strerror(error))) (\(SystemCallError.name(of: error)))")
                default:
                    throw TransportError.system(SystemCallError(call: "connect", errno: error, context: "connect to \(endpoint)"))
                }
                let flags = fcntl(fd, F_GETFL)
                try check("fcntl(F_SETFL)", endpoint) { fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
                try configureDataPath(fd, endpoint, trafficClass: trafficClass)
                return fd
            } catch {
                Glibc.close(fd)
                // A name may resolve to several addresses (localhost: ::1 and 127.0.0.1) and the
                // peer may listen on one of them: try the next on refusal or no route. A timeout
                // used up the deadline, so it is the answer.
                switch error {
                case .unreachable, .connectionRefused:
                    lastError = error
                    continue
                default:
                    throw error
                }
            }
        }
        throw lastError
    }

    /// Without `bytes` (`tcp-buffer = "auto"`): the receive buffer is fixed here, before the
    /// handshake, at the larger of the old 4 MiB and tcp_rmem's maximum (what autotuning would
    /// grow it to), forced past net.core.rmem_max (CAP_NET_ADMIN; without it autotuning stays
    /// on). Autotuning alone moved 11 % less than the old fixed 4 MiB on loopback (64 KiB ×
    /// 128, 6 paired invocations), and a receive buffer can only be raised before the
    /// handshake (see `sizeSendBufferForRoundTrip`). The send buffer is sized once the round
    /// trip is known, by `sizeSendBufferForRoundTrip`. The old fixed 4 MiB each way held a
    /// 100 ms round trip to 50 MiB/s (issue 19); Perf/README.md "Long fat links" has figures.
    ///
    /// With `bytes`, sets both to it — forced past net.core.{w,r}mem_max where this process may
    /// (CAP_NET_ADMIN; rdmig usually runs as root to pin memory) — and fails naming the
    /// sysctls when the kernel gave less: a silently smaller buffer would be the slow link the
    /// operator set it to avoid. Set before listen() and connect(): accepted sockets inherit it,
    /// and the window scale is chosen from the receive buffer at the handshake.
    static func configureBuffers(_ fd: Int32, bytes: Int?, _ endpoint: TransportEndpoint) throws(TransportError) {
        guard let bytes else {
            var value = Int32(clamping: max(minimumBufferBytes, autotunedReceiveLimit))
            _ = setsockopt(fd, SOL_SOCKET, receiveBufferForce, &value, socklen_t(MemoryLayout<Int32>.size))
            return
        }
        try setBuffer(fd, force: sendBufferForce, plain: SO_SNDBUF, name: "SO_SNDBUF", sysctl: "net.core.wmem_max", bytes, endpoint)
        try setBuffer(fd, force: receiveBufferForce, plain: SO_RCVBUF, name: "SO_RCVBUF", sysctl: "net.core.rmem_max", bytes, endpoint)
    }

    private static func setBuffer(
        _ fd: Int32, force: Int32, plain: Int32, name: String, sysctl: String, _ bytes: Int, _ endpoint: TransportEndpoint
    ) throws(TransportError) {
        let value = Int32(clamping: bytes)
        var requested = value
        let length = socklen_t(MemoryLayout<Int32>.size)
        let forceErrno: Int32 = setsockopt(fd, SOL_SOCKET, force, &requested, length) == 0 ? 0 : SystemCall.currentErrno()
        if forceErrno != 0 { try setOption(fd, SOL_SOCKET, plain, value, endpoint) }
        // Linux reports twice the size it keeps for the payload (the other half is its
        // bookkeeping), so a granted request reads back as at least the request.
        let granted = try option(fd, SOL_SOCKET, plain, endpoint) / 2
        if granted < value {
            throw .system(SystemCallError(
                call: "setsockopt(\(name))", errno: forceErrno == 0 ? ENOBUFS : forceErrno,
                context: "socket buffer of \(bytes) bytes for \(endpoint): the kernel gave \(granted) (\(sysctl) caps it "
                    + "without CAP_NET_ADMIN); raise \(sysctl), run rdmig with CAP_NET_ADMIN, or use tcp-buffer = \"auto\""))
        }
    }

    /// The link rate `sizeSendBufferForRoundTrip` provisions for: 10 Gb/s. The socket buffers
    /// are limits, not allocations: a slower link only queues more in them.
    static let provisionedBytesPerSecond = 1.25e9

    /// The smallest buffer `tcp-buffer = "auto"` leaves: the old fixed 4 MiB. On loopback,
    /// autotuning of both buffers (the send buffer stops at tcp_wmem's 4 MiB) moved 1.5 GiB/s
    /// where the old 4 MiB request (8 MiB kept) moved 2.1 GiB/s (64 KiB × 128, medians of 4
    /// paired invocations, 2026-12-07, a busy machine).
    static let minimumBufferBytes = 4 << 20

    /// The most the kernel's autotuning grows a send buffer to: net.ipv4.tcp_wmem's maximum,
    /// read once (Linux's default, and this machine's, is 4 MiB).
    static let autotunedSendLimit = sysctlMaximum("/proc/sys/net/ipv4/tcp_wmem") ?? 4 << 20
    /// The same for a receive buffer: tcp_rmem's maximum (Linux's default 6 MiB, here 32 MiB).
    static let autotunedReceiveLimit = sysctlMaximum("/proc/sys/net/ipv4/tcp_rmem") ?? 6 << 20

    /// The last of the three numbers in a tcp_{w,r}mem file ("min default max").
    private static func sysctlMaximum(_ path: String) -> Int? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 128)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        let text = line.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        return fields.count == 3 ? fields[2] : nil
    }

    /// The smoothed round trip of a connected socket (TCP_INFO tcpi_rtt), nil if unknown.
    static func roundTrip(of fd: Int32) -> Duration? {
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        guard getsockopt(fd, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0, info.tcpi_rtt > 0 else { return nil }
        return .microseconds(Int64(info.tcpi_rtt))
    }

    /// `tcp-buffer = "auto"` after the handshake and preamble exchange (a few round trips
    /// measured): sets the send buffer to the larger of the old 4 MiB and the bandwidth-delay
    /// product at `provisionedBytesPerSecond`, forced past net.core.wmem_max (CAP_NET_ADMIN),
    /// when that is more than autotuning may grow it to (tcp_wmem's maximum).
    ///
    /// Measured across a 50 ms one-way delay (Perf/README.md "Long fat links"): autotuning
    /// alone held the send buffer at tcp_wmem's 4 MiB, 22 MiB/s, below the old fixed 4 MiB
    /// (which the kernel doubles: 50 MiB/s); `auto` moved 207 MiB/s. Without
    /// CAP_NET_ADMIN autotuning stays on: a plain SO_SNDBUF is capped at net.core.wmem_max,
    /// often below what autotuning reaches.
    ///
    /// The receive buffer was set before the handshake (`configureBuffers`): raising SO_RCVBUF
    /// after it kept the advertised window small on this kernel (6.18; 125 MB set on an
    /// accepted socket: ~4 MB/s across the 50 ms line where autotuning moved 118 MiB/s).
    /// Returns the send buffer size set, nil when autotuning was left alone.
    @discardableResult
    static func sizeSendBufferForRoundTrip(_ fd: Int32, _ endpoint: TransportEndpoint) -> Int? {
        guard let roundTrip = roundTrip(of: fd) else { return nil }
        let product = Int(min(roundTrip.seconds * provisionedBytesPerSecond, Double(TransportOptions.socketBufferBytesRange.upperBound)))
        let size = max(product, minimumBufferBytes)
        guard size > autotunedSendLimit else { return nil }
        var value = Int32(clamping: size)
        return setsockopt(fd, SOL_SOCKET, sendBufferForce, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 ? size : nil
    }

    static func option(_ fd: Int32, _ level: Int32, _ name: Int32, _ endpoint: TransportEndpoint) throws(TransportError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        try check("getsockopt", endpoint) { getsockopt(fd, level, name, &value, &length) }
        return value
    }

    /// Headers are written together with their payloads (writev), so Nagle would only delay
    /// ACK frames and small SENDs. `trafficClass` marks the packets (IP_TOS or IPV6_TCLASS by
    /// the socket's family).
    static func configureDataPath(_ fd: Int32, _ endpoint: TransportEndpoint, trafficClass: UInt8?) throws(TransportError) {
        try setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1, endpoint)
        if let trafficClass {
            var address = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = try check("getsockname", endpoint) {
                withUnsafeMutablePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
                }
            }
            if Int32(address.ss_family) == AF_INET6 {
                try setOption(fd, Int32(IPPROTO_IPV6), TCPSocket.ipv6TrafficClass, Int32(trafficClass), endpoint)
            } else {
                try setOption(fd, Int32(IPPROTO_IP), IP_TOS, Int32(trafficClass), endpoint)
            }
        }
    }

    /// IPV6_TCLASS (include/uapi/linux/in6.h), which Glibc's module does not export.
    static let ipv6TrafficClass: Int32 = 67

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32, _ endpoint: TransportEndpoint) throws(TransportError) {
        var value = value
        try check("setsockopt", endpoint) { setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size)) }
    }

    /// Waits for `events` on `fd`; false when `deadline` passed first.
    static func waitFor(_ fd: Int32, events: Int16, until deadline: ContinuousClock.Instant?, _ endpoint: TransportEndpoint) throws(TransportError) -> Bool {
        while true {
            var timeout: Int32 = -1
            if let deadline {
                let remaining = deadline - ContinuousClock.now
                if remaining <= .zero { return false }
                timeout = Int32(clamping: Int64((remaining.seconds * 1000).rounded(.up)))
            }
            var descriptor = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&descriptor, 1, timeout)
            if ready > 0 { return true }
            if ready < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                throw TransportError.system(SystemCallError(call: "poll", errno: error, context: "\(endpoint)"))
            }
        }
    }

    /// Control path: sends all of `bytes`.
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], _ endpoint: TransportEndpoint) throws(TransportError) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR { continue }
                throw disconnected(endpoint, errno: error)
            }
            offset += sent
        }
    }

    /// Control path: reads up to `count` bytes before `deadline`; fewer when the peer closed.
    static func receive(_ fd: Int32, count: Int, until deadline: ContinuousClock.Instant, timeout: Duration,
                        operation: String, _ endpoint: TransportEndpoint) throws(TransportError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            guard try waitFor(fd, events: Int16(POLLIN), until: deadline, endpoint) else {
                throw .timedOut(operation: operation, after: timeout)
            }
            let received = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, Int32(MSG_DONTWAIT)) }
            if received == 0 { break }
            if received < 0 {
                let error = SystemCall.currentErrno()
                if error == EINTR || error == EAGAIN { continue }
                if error == ECONNRESET { break }
                throw .system(SystemCallError(call: "recv", errno: error, context: operation))
            }
            offset += received
        }
        return Array(bytes.prefix(offset))
    }

    /// Exchanges preambles: both send first, then read, so neither side waits on the other.
    static func exchangePreambles(_ fd: Int32, peer: TransportEndpoint, deadline: ContinuousClock.Instant, timeout: Duration) throws(TransportError) {
        try sendAll(fd, TCPPreamble.encode(), peer)
        let received = try receive(fd, count: TCPPreamble.size, until: deadline, timeout: timeout,
                                   operation: "rdmig tcp handshake with \(peer)", peer)
        try TCPPreamble.validate(received, from: peer)
    }

    static func localEndpoint(of fd: Int32) throws(TransportError) -> TransportEndpoint {
        var address = Address()
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &address.length) }
        }
        if result != 0 { throw .system(SystemCallError(call: "getsockname", errno: SystemCall.currentErrno())) }
        return endpoint(of: address)
    }

    static func peerEndpoint(of fd: Int32) throws(TransportError) -> TransportEndpoint {
        var address = Address()
        address.length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &address.storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &address.length) }
        }
        if result != 0 { throw .system(SystemCallError(call: "getpeername", errno: SystemCall.currentErrno())) }
        return endpoint(of: address)
    }

    static func endpoint(of address: Address) -> TransportEndpoint {
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        var storage = address.storage
        let status = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, address.length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                            NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard status == 0 else { return TransportEndpoint(host: "?", port: 0) }
        let hostText = host.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let serviceText = service.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return TransportEndpoint(host: hostText, port: UInt16(serviceText) ?? 0)
    }

    /// The disconnect error for a failed send or receive on an established connection.
    static func disconnected(_ peer: TransportEndpoint, errno error: Int32) -> TransportError {
        switch error {
        case ECONNRESET: return .peerDisconnected(peer, detail: "connection reset by peer (ECONNRESET)")
        case EPIPE: return .peerDisconnected(peer, detail: "connection closed by peer (EPIPE)")
        case ETIMEDOUT: return .peerDisconnected(peer, detail: "peer stopped answering (ETIMEDOUT)")
        default:
            return .peerDisconnected(peer, detail: "\(String(cString: strerror(error))) (\(SystemCallError.name(of: error)))")
        }
    }

    @discardableResult
    static func check(_ call: String, _ endpoint: TransportEndpoint, _ body: () -> Int32) throws(TransportError) -> Int32 {
        do {
            return try SystemCall.check(call, context: "\(endpoint)", body)
        } catch {
            throw .system(error)
        }
    }
}
