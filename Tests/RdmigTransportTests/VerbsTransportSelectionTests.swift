import Testing
@testable import RdmigTransport

@Suite struct VerbsTransportSelection {
    static let endpoint = TransportEndpoint(host: "127.0.0.1", port: 7471)

    @Test(.enabled(if: !VerbsTestEnvironment.hasDevice, "this machine has an RDMA device"))
    func withoutADeviceTCPIsChosenBecauseNoDeviceWasFound() {
        let selection = TransportSelector.select(for: Self.endpoint)
        #expect(selection.kind == .tcp && selection.backend is TCPTransport)
        #expect(selection.reason == "no RDMA device found")
        #expect(selection.device == nil)
        #expect(RDMAAddressLookup.lookup("10.1.2.3") == .none(reason: "no RDMA device found"))
    }

    @Test(.enabled(if: !VerbsTestEnvironment.hasDevice, "this machine has an RDMA device"))
    func forcingVerbsWithoutADeviceIsHonouredAndSaysItWillFail() {
        let selection = TransportSelector.select(for: Self.endpoint, forced: .verbs)
        #expect(selection.kind == .verbs && selection.backend is VerbsTransport)
        #expect(selection.reason == "verbs forced by configuration although no RDMA device found: connect and listen will fail")
    }

    @Test func forcingTCPIsHonouredWhateverTheDevices() {
        let selection = TransportSelector.select(
            for: Self.endpoint, forced: .tcp, verbs: VerbsTransport(), tcp: { TCPTransport() },
            lookup: { _ in .device(name: "rxe0", port: 1, reason: "on rxe0") })
        #expect(selection.kind == .tcp && selection.reason == "tcp forced by configuration")
    }

    @Test func anAddressOnAnRDMADeviceGetsVerbsWithTheDevice() {
        let selection = TransportSelector.select(
            for: TransportEndpoint(host: "10.0.2.15", port: 7471), forced: nil, verbs: VerbsTransport(), tcp: { TCPTransport() },
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
            for: Self.endpoint, forced: nil, verbs: VerbsTransport(), tcp: { TCPTransport() },
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
