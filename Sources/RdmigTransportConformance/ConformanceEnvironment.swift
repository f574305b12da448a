import RdmigTransport

/// Where a conformance run happens: which backend, and which local address both ends use
/// (127.0.0.1 here; the guest's own IP for `verbs` over Soft-RoCE, since rdma_cm needs an
/// address bound to an RDMA device).
public struct ConformanceEnvironment: Sendable {
    public var backend: any TransportBackend
    public var host: String
    public var options: TransportOptions

    public init(backend: any TransportBackend, host: String = "127.0.0.1", options: TransportOptions = TransportOptions()) {
        self.backend = backend
        self.host = host
        self.options = options
    }
}
