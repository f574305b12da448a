import RdmigTransport

/// Where a conformance run happens: which backend, and which local address both ends use
/// (127.0.0.1 here; the guest's own IP for `verbs` over Soft-RoCE, since rdma_cm needs an
/// address bound to an RDMA device).
public struct ConformanceEnvironment: Sendable {
    public var backend: any TransportBackend
    public var host: String
    public var options: TransportOptions
    /// Bytes the large-transfer case moves. 64 MiB takes ~0.1 s over tcp on loopback; Soft-RoCE
    /// under TCG moves ~50 MB/s and registers against RLIMIT_MEMLOCK, so a guest run may lower it.
    public var largeTransferBytes: Int
    /// The IPv6 address the IPv6 case uses: ::1 next to IPv4 loopback; for verbs, an IPv6
    /// address on the RDMA netdev (a link-local one with its zone, `fe80::…%eth0`), since
    /// rdma_cm cannot use ::1. nil: the case is not applicable and says so.
    public var ipv6Host: String?

    public init(backend: any TransportBackend, host: String = "127.0.0.1", options: TransportOptions = TransportOptions(),
                largeTransferBytes: Int = 64 << 20, ipv6Host: String? = nil) {
        self.backend = backend
        self.host = host
        self.options = options
        self.largeTransferBytes = largeTransferBytes
        self.ipv6Host = ipv6Host ?? ((host == "127.0.0.1" || host == "localhost") ? "::1" : nil)
    }
}
