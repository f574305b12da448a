import CRDMA
import Testing
@testable import RdmigTransport

@Suite struct VerbsQueueSizing {
    static func device(maxWorkRequests: Int32, maxEntries: Int32) -> ibv_device_attr {
        var attributes = ibv_device_attr()
        attributes.max_qp_wr = maxWorkRequests
        attributes.max_cqe = maxEntries
        return attributes
    }

    @Test func perftestDefaultsFitADeviceThatAllowsThem() {
        var port = ibv_port_attr()
        port.max_msg_sz = 1 << 31
        let fitted = QueuePairResources.fit(TransportOptions(), device: Self.device(maxWorkRequests: 16384, maxEntries: 65536), port: port)
        #expect(fitted == TransportOptions())
    }

    @Test func queuesAreCutToTheDeviceLimits() {
        var options = TransportOptions()
        options.sendQueueDepth = 4096
        options.receiveQueueDepth = 4096
        options.maxSendBytes = 1 << 30
        var port = ibv_port_attr()
        port.max_msg_sz = 1 << 20
        let fitted = QueuePairResources.fit(options, device: Self.device(maxWorkRequests: 1024, maxEntries: 1536), port: port)
        #expect(fitted.sendQueueDepth == 768 && fitted.receiveQueueDepth == 768, "the CQ must hold both queues: \(fitted)")
        #expect(fitted.maxSendBytes == 1 << 20)
        let tiny = QueuePairResources.fit(options, device: Self.device(maxWorkRequests: 100, maxEntries: 100_000), port: port)
        #expect(tiny.sendQueueDepth == 100 && tiny.receiveQueueDepth == 100)
    }

    @Test func pollTimeoutsRoundUpAndNeverSpin() {
        #expect(PollTimeout.milliseconds(until: nil) == -1)
        #expect(PollTimeout.milliseconds(until: ContinuousClock.now.advanced(by: .seconds(-1))) == 0)
        let soon = PollTimeout.milliseconds(until: ContinuousClock.now.advanced(by: .microseconds(300)))
        #expect(soon == 1 || soon == 0)
        let later = PollTimeout.milliseconds(until: ContinuousClock.now.advanced(by: .seconds(2)))
        #expect(later > 1900 && later <= 2000)
        #expect(PollTimeout.milliseconds(until: ContinuousClock.now.advanced(by: .seconds(1 << 40))) == Int32.max)
    }
}
