import Testing
@testable import RdmigTransport

/// Stands in for the tcp backend so selection can be observed without it; never connects.
struct TCPBackendStandIn: TransportBackend {
    var kind: TransportBackendKind { .tcp }
    func listen(on endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportListener {
        throw .deviceUnavailable(reason: "test stand-in for the tcp backend")
    }
    func connect(to endpoint: TransportEndpoint, options: TransportOptions) throws(TransportError) -> any TransportConnection {
        throw .deviceUnavailable(reason: "test stand-in for the tcp backend")
    }
}

@Suite struct VerbsTransportSelection {
    static let endpoint = TransportEndpoint(host: "127.0.0.1", port: 7471)

    @Test(.enabled(if: !VerbsTestEnvironment.hasDevice, "this machine has an RDMA device"))
    func withoutADeviceTCPIsChosenBecauseNoDeviceWasFound() {
        let selection = TransportSelector.select(for: Self.endpoint, tcp: { TCPBackendStandIn() })
        #expect(selection.kind == .tcp)
        #expect(selection.reason == "no RDMA device found")
        #expect(selection.device == nil)
        #expect(RDMAAddressLookup.lookup("10.1.2.3") == .none(reason: "no RDMA device found"))
    }

    @Test(.enabled(if: !VerbsTestEnvironment.hasDevice, "this machine has an RDMA device"))
    func forcingVerbsWithoutADeviceIsHonouredAndSaysItWillFail() {
        let selection = TransportSelector.select(for: Self.endpoint, forced: .verbs, tcp: { TCPBackendStandIn() })
        #expect(selection.kind == .verbs)
        #expect(selection.reason == "verbs forced by configuration although no RDMA device found: connect and listen will fail")
    }

    @Test func forcingTCPIsHonouredWhateverTheDevices() {
        let selection = TransportSelector.select(
            for: Self.endpoint, forced: .tcp, verbs: VerbsTransport(), tcp: { TCPBackendStandIn() },
            lookup: { _ in .device(name: "rxe0", port: 1, reason: "on rxe0") })
        #expect(selection.kind == .tcp && selection.reason == "tcp forced by configuration")
    }

    @Test func anAddressOnAnRDMADeviceGetsVerbsWithTheDevice() {
        let selection = TransportSelector.select(
            for: TransportEndpoint(host: "10.0.2.15", port: 7471), forced: nil, verbs: VerbsTransport(), tcp: { TCPBackendStandIn() },
            lookup: { host in .device(name: "rxe0", port: 1, reason: "\(host) is on RDMA device rxe0 port 1") })
        #expect(selection.kind == .verbs && selection.device == "rxe0")
        #expect(selection.reason == "10.0.2.15 is on RDMA device rxe0 port 1")
    }

    @Test func loopbackAddressesAreNeverOnAnRDMADevice() {
        let devices = [RDMADevice(name: "rxe0")]
        #expect(RDMAAddressLookup.lookup("127.0.0.1", devices: devices, timeout: .seconds(1))
            == .none(reason: "127.0.0.1 is a loopback address, not on an RDMA device"))
        #expect(RDMAAddressLookup.lookup("::1", devices: devices, timeout: .seconds(1))
            == .none(reason: "::1 is a loopback address, not on an RDMA device"))
        let selection = TransportSelector.select(
            for: Self.endpoint, forced: nil, verbs: VerbsTransport(), tcp: { TCPBackendStandIn() },
            lookup: { RDMAAddressLookup.lookup($0, devices: devices, timeout: .seconds(1)) })
        #expect(selection.kind == .tcp && selection.reason == "127.0.0.1 is a loopback address, not on an RDMA device")
    }

    @Test func aWildcardListensOnEveryDevice() {
        let devices = [RDMADevice(name: "rxe0"), RDMADevice(name: "mlx5_0")]
        #expect(RDMAAddressLookup.lookup("0.0.0.0", devices: devices, timeout: .seconds(1))
            == .device(name: "rxe0, mlx5_0", port: 0, reason: "0.0.0.0 listens on every RDMA device (rxe0, mlx5_0)"))
    }

    @Test func anUnresolvableHostSaysSo() {
        guard case .none(let reason) = RDMAAddressLookup.lookup("no-such-host.invalid", devices: [RDMADevice(name: "rxe0")], timeout: .seconds(1)) else {
            Issue.record("an unresolvable host was found on a device")
            return
        }
        #expect(reason.contains("cannot resolve 'no-such-host.invalid'"))
    }
}
