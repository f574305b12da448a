#if canImport(Glibc)
import Glibc
#endif
import CRDMA
import Testing
@testable import RdmigTransport

/// The CM private-data hello, the listener's reject reasons, and how connect reports every
/// CM event that ends a connection attempt.
@Suite struct VerbsConnectionSetup {
    static let endpoint = TransportEndpoint(host: "10.0.2.15", port: 7471)

    @Test func theHelloIsMagicVersionAndFlagsBigEndian() throws {
        let bytes = ConnectionHello(version: 1, flags: ConnectionHello.Flags(rawValue: 0x0102)).encoded()
        #expect(bytes == [0x52, 0x44, 0x4D, 0x47, 0x00, 0x01, 0x01, 0x02])
        #expect(bytes.count <= 56, "RDMA_PS_TCP connect private data is at most 56 bytes")
        let decoded = try ConnectionHello(decoding: bytes)
        #expect(decoded.version == 1 && decoded.flags.rawValue == 0x0102)
    }

    @Test func theCMsZeroPaddingAfterTheHelloIsIgnored() throws {
        let padded = ConnectionHello().encoded() + [UInt8](repeating: 0, count: 48)
        #expect(try ConnectionHello(decoding: padded) == ConnectionHello())
        #expect(ConnectionHello.evaluate(request: padded) == .success(ConnectionHello()))
    }

    @Test func aRequestWithoutAnRdmigHelloIsRejectedAsNotAnRdmigPeer() {
        for foreign in [[], [1, 2, 3], [UInt8](repeating: 0, count: 56)] as [[UInt8]] {
            guard case .failure(let rejection) = ConnectionHello.evaluate(request: foreign) else {
                Issue.record("accepted \(foreign)")
                continue
            }
            #expect(rejection.reason == .notAnRdmigPeer)
            #expect(rejection.message.contains("not") && rejection.message.contains("rdmig"), "\(rejection.message)")
        }
    }

    @Test func anotherProtocolVersionIsRejectedWithTheReasonCarriedToTheClient() throws {
        let request = ConnectionHello(version: 2).encoded() + [UInt8](repeating: 0, count: 48)
        guard case .failure(let rejection) = ConnectionHello.evaluate(request: request) else {
            Issue.record("version 2 was accepted")
            return
        }
        #expect(rejection.reason == .unsupportedVersion)
        #expect(rejection.message.contains("version 2 is not supported") && rejection.message.contains("speaks version 1"))
        // What the client sees: the same words, from the reject private data (zero-padded by the CM).
        let wire = rejection.encoded()
        #expect(wire.count <= ConnectionRejection.maxEncodedSize)
        let padded = wire + [UInt8](repeating: 0, count: ConnectionRejection.maxEncodedSize - wire.count)
        let error = VerbsErrorMapping.rejection(status: VerbsErrorMapping.rejectReasonConsumer, privateData: padded, endpoint: Self.endpoint)
        #expect(error == .rejectedByPeer(Self.endpoint, reason: rejection.message))
        #expect(error.description.contains("10.0.2.15:7471 rejected the connection: rdmig verbs protocol version 2 is not supported"))
    }

    @Test func aRejectionRoundTripsAndAnOverlongMessageIsCutAtACharacter() {
        let rejection = ConnectionRejection(reason: .resourcesUnavailable, version: 1, message: "no queue pair")
        #expect(ConnectionRejection(decoding: rejection.encoded()) == rejection)
        let long = ConnectionRejection(reason: .other, message: String(repeating: "é", count: 100))
        let bytes = long.encoded()
        #expect(bytes.count <= ConnectionRejection.maxEncodedSize)
        let decoded = ConnectionRejection(decoding: bytes)
        #expect(decoded?.message == String(repeating: "é", count: ConnectionRejection.maxMessageBytes / 2))
        #expect(ConnectionRejection(decoding: [0x52, 0x44, 0x4D, 0x52, 0, 1]) == nil)
        #expect(ConnectionRejection(decoding: ConnectionHello().encoded() + [0]) == nil)
    }

    @Test func nobodyListeningIsConnectionRefused() {
        #expect(VerbsErrorMapping.rejection(status: VerbsErrorMapping.rejectReasonNoListener, privateData: [], endpoint: Self.endpoint)
            == .connectionRefused(Self.endpoint))
        #expect(VerbsErrorMapping.rejection(status: -ECONNREFUSED, privateData: [], endpoint: Self.endpoint)
            == .connectionRefused(Self.endpoint))
        let event = CMEvent(type: RDMA_CM_EVENT_REJECTED, status: 8, privateData: [UInt8](repeating: 0, count: 148))
        #expect(VerbsErrorMapping.connectFailure(event, endpoint: Self.endpoint, step: "connection setup") == .connectionRefused(Self.endpoint))
    }

    @Test func aRejectWithoutAnRdmigReasonSaysSo() {
        guard case .rejectedByPeer(_, let reason) = VerbsErrorMapping.rejection(status: 28, privateData: [], endpoint: Self.endpoint) else {
            Issue.record("not rejectedByPeer")
            return
        }
        #expect(reason.contains("without saying why"))
        guard case .rejectedByPeer(_, let other) = VerbsErrorMapping.rejection(status: 10, privateData: [], endpoint: Self.endpoint) else {
            Issue.record("not rejectedByPeer")
            return
        }
        #expect(other.contains("reject reason 10"))
    }

    @Test func everyCMEventThatEndsAConnectAttemptHasItsError() {
        func failure(_ type: rdma_cm_event_type, _ status: Int32) -> TransportError {
            VerbsErrorMapping.connectFailure(CMEvent(type: type, status: status), endpoint: Self.endpoint, step: "connection setup")
        }
        guard case .unreachable(let endpoint, let reason) = failure(RDMA_CM_EVENT_ADDR_ERROR, -ENODEV) else {
            Issue.record("ADDR_ERROR is not unreachable")
            return
        }
        #expect(endpoint == Self.endpoint && reason.contains("address resolution failed") && reason.contains("ENODEV"))
        guard case .unreachable(_, let route) = failure(RDMA_CM_EVENT_ROUTE_ERROR, -ETIMEDOUT) else {
            Issue.record("ROUTE_ERROR is not unreachable")
            return
        }
        #expect(route.contains("route resolution failed") && route.contains("ETIMEDOUT"))
        guard case .unreachable(_, let unanswered) = failure(RDMA_CM_EVENT_UNREACHABLE, -ETIMEDOUT) else {
            Issue.record("UNREACHABLE is not unreachable")
            return
        }
        #expect(unanswered.contains("did not answer"))
        guard case .unreachable = failure(RDMA_CM_EVENT_CONNECT_ERROR, -ECONNRESET) else {
            Issue.record("CONNECT_ERROR is not unreachable")
            return
        }
        guard case .peerDisconnected(let peer, _) = failure(RDMA_CM_EVENT_DISCONNECTED, 0) else {
            Issue.record("DISCONNECTED is not peerDisconnected")
            return
        }
        #expect(peer == Self.endpoint)
        guard case .deviceUnavailable(let removed) = failure(RDMA_CM_EVENT_DEVICE_REMOVAL, 0) else {
            Issue.record("DEVICE_REMOVAL is not deviceUnavailable")
            return
        }
        #expect(removed.contains("RDMA_CM_EVENT_DEVICE_REMOVAL"))
        guard case .protocolViolation = failure(RDMA_CM_EVENT_MULTICAST_JOIN, 0) else {
            Issue.record("an unexpected event is not a protocol violation")
            return
        }
    }

    @Test func bindAndResolveFailuresSayTheAddressIsNotOnAnRDMADevice() {
        guard case .deviceUnavailable(let reason) = VerbsTransport.bindFailure(errno: ENODEV, endpoint: TransportEndpoint(host: "127.0.0.1", port: 0)) else {
            Issue.record("ENODEV on bind is not deviceUnavailable")
            return
        }
        #expect(reason.contains("127.0.0.1 is not an address of an RDMA device"))
        guard case .unreachable(_, let route) = VerbsTransport.resolveFailure(call: "rdma_resolve_addr", errno: ENODEV, endpoint: Self.endpoint) else {
            Issue.record("ENODEV on resolve is not unreachable")
            return
        }
        #expect(route.contains("no RDMA device routes to it"))
        #expect(VerbsTransport.bindFailure(errno: EADDRINUSE, endpoint: Self.endpoint)
            == .system(SystemCallErrorFixture.make(call: "rdma_bind_addr", errno: EADDRINUSE, context: "10.0.2.15:7471")))
    }
}
