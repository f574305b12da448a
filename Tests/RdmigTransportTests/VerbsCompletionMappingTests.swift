import CRDMA
import Testing
@testable import RdmigTransport

@Suite struct VerbsCompletionMapping {
    static let peer = TransportEndpoint(host: "10.0.2.15", port: 7471)

    @Test func workCompletionStatusesMapToCompletionStatuses() {
        let table: [(ibv_wc_status, Completion.Status)] = [
            (IBV_WC_SUCCESS, .success),
            (IBV_WC_WR_FLUSH_ERR, .flushed),
            (IBV_WC_REM_ACCESS_ERR, .remoteAccessError),
            (IBV_WC_LOC_LEN_ERR, .localLengthError),
            (IBV_WC_RETRY_EXC_ERR, .transportRetryExceeded),
            (IBV_WC_RNR_RETRY_EXC_ERR, .transportRetryExceeded),
            (IBV_WC_REM_INV_REQ_ERR, .otherError),
            (IBV_WC_LOC_PROT_ERR, .otherError),
            (IBV_WC_REM_OP_ERR, .otherError),
            (IBV_WC_GENERAL_ERR, .otherError),
        ]
        for (status, expected) in table {
            #expect(VerbsErrorMapping.status(status) == expected, "\(String(cString: ibv_wc_status_str(status)))")
        }
    }

    @Test func anOversizedSendOnSoftRoCEIsALengthErrorOnTheReceive() {
        #expect(VerbsErrorMapping.status(IBV_WC_REM_INV_REQ_ERR, onReceive: true) == .localLengthError)
        #expect(VerbsErrorMapping.status(IBV_WC_LOC_QP_OP_ERR, onReceive: true) == .localLengthError)
        #expect(VerbsErrorMapping.status(IBV_WC_LOC_QP_OP_ERR) == .otherError)
        #expect(VerbsErrorMapping.status(IBV_WC_LOC_LEN_ERR, onReceive: true) == .localLengthError)
        #expect(VerbsErrorMapping.status(IBV_WC_WR_FLUSH_ERR, onReceive: true) == .flushed)
        guard case .protocolViolation = VerbsErrorMapping.failure(for: IBV_WC_REM_INV_REQ_ERR, kind: .receive, id: 7, peer: Self.peer) else {
            Issue.record("a receive-side invalid request is not a protocol violation")
            return
        }
        guard case .protocolViolation(let detail) = VerbsErrorMapping.failure(for: IBV_WC_LOC_QP_OP_ERR, kind: .receive, id: 7, peer: Self.peer) else {
            Issue.record("a receive-side QP operation error is not a protocol violation")
            return
        }
        #expect(detail.contains("receive id 7") && detail.contains("IBV_WC_LOC_QP_OP_ERR"))
        guard case .protocolViolation = VerbsErrorMapping.failure(for: IBV_WC_REM_OP_ERR, kind: .send, id: 1, peer: Self.peer) else {
            Issue.record("a SEND the peer could not take is not a protocol violation")
            return
        }
    }

    @Test func aRefusedWriteIsRemoteAccessRefusedNamingTheRequest() {
        let failure = VerbsErrorMapping.failure(for: IBV_WC_REM_ACCESS_ERR, kind: .write, id: 42, peer: Self.peer)
        guard case .remoteAccessRefused(let detail)? = failure else {
            Issue.record("got \(String(describing: failure))")
            return
        }
        #expect(detail.contains("WRITE id 42") && detail.contains("10.0.2.15:7471") && detail.contains("IBV_WC_REM_ACCESS_ERR"))
    }

    @Test func aPeerThatStopsAnsweringIsPeerDisconnected() {
        for status in [IBV_WC_RETRY_EXC_ERR, IBV_WC_RNR_RETRY_EXC_ERR] {
            guard case .peerDisconnected(let endpoint, _)? = VerbsErrorMapping.failure(for: status, kind: .send, id: 1, peer: Self.peer) else {
                Issue.record("\(status) is not peerDisconnected")
                continue
            }
            #expect(endpoint == Self.peer)
        }
    }

    @Test func successesAndFlushesRecordNoFailureOfTheirOwn() {
        #expect(VerbsErrorMapping.failure(for: IBV_WC_SUCCESS, kind: .write, id: 1, peer: Self.peer) == nil)
        #expect(VerbsErrorMapping.failure(for: IBV_WC_WR_FLUSH_ERR, kind: .receive, id: 1, peer: Self.peer) == nil)
    }

    @Test func otherErrorsCloseTheConnectionWithTheDevicesWords() {
        guard case .connectionClosed(let detail)? = VerbsErrorMapping.failure(for: IBV_WC_GENERAL_ERR, kind: .send, id: 3, peer: Self.peer) else {
            Issue.record("IBV_WC_GENERAL_ERR is not connectionClosed")
            return
        }
        #expect(detail.contains("SEND id 3") && detail.contains(String(cString: ibv_wc_status_str(IBV_WC_GENERAL_ERR))))
        guard case .invalidWorkRequest? = VerbsErrorMapping.failure(for: IBV_WC_LOC_PROT_ERR, kind: .write, id: 3, peer: Self.peer) else {
            Issue.record("IBV_WC_LOC_PROT_ERR is not invalidWorkRequest")
            return
        }
    }

    @Test func asyncEventsAboutAQueuePairBecomeItsFailure() {
        guard case .invalidRemoteAccess(let detail)? = VerbsErrorMapping.failure(for: IBV_EVENT_QP_ACCESS_ERR, device: "mlx5_0", peer: Self.peer) else {
            Issue.record("QP_ACCESS_ERR is not invalidRemoteAccess")
            return
        }
        #expect(detail.contains("mlx5_0"))
        guard case .deviceUnavailable? = VerbsErrorMapping.failure(for: IBV_EVENT_DEVICE_FATAL, device: "mlx5_0", peer: Self.peer) else {
            Issue.record("DEVICE_FATAL is not deviceUnavailable")
            return
        }
        #expect(VerbsErrorMapping.failure(for: IBV_EVENT_PORT_ACTIVE, device: "mlx5_0", peer: Self.peer) == nil)
        #expect(VerbsErrorMapping.failure(for: IBV_EVENT_COMM_EST, device: "mlx5_0", peer: Self.peer) == nil)
    }

    @Test func aQueuePairThatFailedWithoutALocalCauseReportsTheRefusedAccess() {
        guard case .invalidRemoteAccess(let detail) = VerbsErrorMapping.responderRefusal(peer: Self.peer, device: "rxe0") else {
            Issue.record("not invalidRemoteAccess")
            return
        }
        #expect(detail.contains("rxe0") && detail.contains("10.0.2.15:7471"))
    }

    @Test func postErrorsMapToQueueFullOrInvalidRequest() {
        #expect(VerbsErrorMapping.postFailure(ENOMEM, queue: "send", depth: 128, id: 5) == .queueFull(queue: "send", depth: 128))
        guard case .invalidWorkRequest = VerbsErrorMapping.postFailure(EINVAL, queue: "receive", depth: 512, id: 5) else {
            Issue.record("EINVAL is not invalidWorkRequest")
            return
        }
        #expect(VerbsErrorMapping.postFailure(EIO, queue: "send", depth: 128, id: 5)
            == .system(SystemCallErrorFixture.make(call: "ibv_post_send", errno: EIO, context: "work request id 5")))
    }
}
