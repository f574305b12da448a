#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import RdmigTransport

@Suite struct VerbsWithoutDevice {
    /// The reason every no-device failure must carry: what happened and what to do.
    static func expectNoDeviceReason(_ error: TransportError, call: String) {
        guard case .deviceUnavailable(let reason) = error else {
            Issue.record("expected deviceUnavailable, got \(error)")
            return
        }
        #expect(reason.contains("\(call) failed with ENODEV"), "\(reason)")
        #expect(reason.contains("no RDMA device"), "\(reason)")
        #expect(reason.contains("--backend tcp"), "\(reason)")
        #expect(error.description.hasPrefix("no RDMA device: "), "\(error)")
    }

    @Test(.enabled(if: !VerbsTestEnvironment.hasDevice, "this machine has an RDMA device"))
    func connectWithoutADeviceFailsWithDeviceUnavailable() {
        var options = TransportOptions()
        options.connectTimeout = .seconds(1)
        do {
            _ = try VerbsTransport().connect(to: TransportEndpoint(host: "127.0.0.1", port: 7471), options: options)
            Issue.record("connect succeeded without an RDMA device")
        } catch {
            VerbsWithoutDevice.expectNoDeviceReason(error, call: "rdma_create_event_channel")
        }
    }

    @Test(.enabled(if: !VerbsTestEnvironment.hasDevice, "this machine has an RDMA device"))
    func listenWithoutADeviceFailsWithDeviceUnavailable() {
        do {
            _ = try VerbsTransport().listen(on: TransportEndpoint(host: "0.0.0.0", port: 0), options: TransportOptions())
            Issue.record("listen succeeded without an RDMA device")
        } catch {
            VerbsWithoutDevice.expectNoDeviceReason(error, call: "rdma_create_event_channel")
        }
    }

    @Test func enodevFromTheCMIsNoDeviceNotACrash() {
        VerbsWithoutDevice.expectNoDeviceReason(VerbsErrorMapping.eventChannelFailure(errno: ENODEV), call: "rdma_create_event_channel")
        VerbsWithoutDevice.expectNoDeviceReason(
            VerbsErrorMapping.eventChannelFailure(errno: ENODEV, call: "rdma_create_id"), call: "rdma_create_id")
    }

    @Test func aMissingOrForbiddenCMDeviceNamesTheFix() {
        guard case .deviceUnavailable(let missing) = VerbsErrorMapping.eventChannelFailure(errno: ENOENT) else {
            Issue.record("ENOENT is not deviceUnavailable")
            return
        }
        #expect(missing.contains("/dev/infiniband/rdma_cm") && missing.contains("modprobe rdma_ucm"))
        guard case .deviceUnavailable(let forbidden) = VerbsErrorMapping.eventChannelFailure(errno: EACCES) else {
            Issue.record("EACCES is not deviceUnavailable")
            return
        }
        #expect(forbidden.contains("permission"))
    }

    @Test func otherCMFailuresKeepTheCallAndErrno() {
        #expect(VerbsErrorMapping.eventChannelFailure(errno: EMFILE)
            == .system(SystemCallErrorFixture.make(call: "rdma_create_event_channel", errno: EMFILE)))
    }
}
