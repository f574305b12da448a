import Testing
import RdmigTransport
import RdmigTransportConformance

/// The shared transport conformance suite against the `tcp` backend on 127.0.0.1; each case
/// shows by name. A case that does not apply here is reported as cancelled with its reason.
@Suite struct TCPConformanceTests {
    @Test(arguments: TransportConformance.cases.map(\.name))
    func conformance(_ name: String) throws {
        let conformanceCase = try #require(TransportConformance.case(named: name))
        do {
            try conformanceCase.run(ConformanceEnvironment(backend: TCPTransport()))
        } catch let skip as ConformanceSkip {
            try Test.cancel("\(skip)")
        }
    }
}
