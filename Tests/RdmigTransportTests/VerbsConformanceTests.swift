import Testing
import RdmigTransport
import RdmigTransportConformance

/// The shared transport conformance suite against the `verbs` backend, on the address of an
/// RDMA interface (RDMIG_VERBS_HOST, else the first IPv4 address of a device's netdev with an
/// active port). Where no RDMA device exists the whole suite is skipped and says why; inside
/// the Soft-RoCE guest (Tests/softroce) it runs on rxe0.
@Suite(.enabled(
    if: VerbsTestEnvironment.conformanceSkipReason == nil,
    Comment(rawValue: "verbs conformance skipped: \(VerbsTestEnvironment.conformanceSkipReason ?? "")")))
struct VerbsConformanceTests {
    @Test(arguments: TransportConformance.cases.map(\.name))
    func conformance(_ name: String) throws {
        let conformanceCase = try #require(TransportConformance.case(named: name))
        let host = try #require(VerbsTestEnvironment.conformanceHost)
        do {
            try conformanceCase.run(ConformanceEnvironment(backend: VerbsTransport(), host: host))
        } catch let skip as ConformanceSkip {
            try Test.cancel("\(skip)")
        }
    }

    /// The same cases with the completion queue busy-polled instead of slept on.
    @Test(arguments: TransportConformance.cases.map(\.name))
    func conformanceBusyPolling(_ name: String) throws {
        let conformanceCase = try #require(TransportConformance.case(named: name))
        let host = try #require(VerbsTestEnvironment.conformanceHost)
        var options = TransportOptions()
        options.completionMode = .busyPoll
        do {
            try conformanceCase.run(ConformanceEnvironment(backend: VerbsTransport(), host: host, options: options))
        } catch let skip as ConformanceSkip {
            try Test.cancel("\(skip)")
        }
    }
}
