/// Picks the backend for an address: `verbs` when rdma_cm says the address is on (or routes
/// through) an RDMA device, else `tcp`, always with the reason, which `rdmig probe` prints.
/// A forced choice (`--backend`, config key `transport.backend`) is honoured as is; forcing
/// verbs where no device serves the address fails clearly at connect/listen.
public enum TransportSelector {
    public struct Selection: Sendable {
        public var backend: any TransportBackend
        public var reason: String
        /// The RDMA device when `verbs` was chosen because of one.
        public var device: String?

        public var kind: TransportBackendKind { backend.kind }
    }

    /// The backend for `endpoint`: `VerbsTransport()` or `TCPTransport()`, with the reason.
    public static func select(for endpoint: TransportEndpoint, forced: TransportBackendKind? = nil) -> Selection {
        select(for: endpoint, forced: forced, tcp: { TCPTransport() })
    }

    /// The same with a configured verbs backend and the construction of the tcp one given.
    public static func select(
        for endpoint: TransportEndpoint, forced: TransportBackendKind? = nil,
        verbs: VerbsTransport = VerbsTransport(), tcp: @Sendable () -> any TransportBackend
    ) -> Selection {
        select(for: endpoint, forced: forced, verbs: verbs, tcp: tcp, lookup: { RDMAAddressLookup.lookup($0) })
    }

    static func select(
        for endpoint: TransportEndpoint, forced: TransportBackendKind?, verbs: VerbsTransport,
        tcp: @Sendable () -> any TransportBackend, lookup: (String) -> RDMAAddressLookup.Outcome
    ) -> Selection {
        switch forced {
        case .tcp:
            return Selection(backend: tcp(), reason: "tcp forced by configuration", device: nil)
        case .verbs:
            let outcome = lookup(endpoint.host)
            switch outcome {
            case .device(let name, _, let reason):
                return Selection(backend: verbs, reason: "verbs forced by configuration; \(reason)", device: name)
            case .none(let reason):
                return Selection(backend: verbs, reason: "verbs forced by configuration although \(reason): connect and listen will fail", device: nil)
            }
        case nil:
            switch lookup(endpoint.host) {
            case .device(let name, _, let reason):
                return Selection(backend: verbs, reason: reason, device: name)
            case .none(let reason):
                return Selection(backend: tcp(), reason: reason, device: nil)
            }
        }
    }
}
