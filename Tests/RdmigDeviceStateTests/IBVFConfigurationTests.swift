import Testing

@testable import RdmigDeviceState

@Suite struct IBSoftwareSpecs {
    @Test func countsNotGivenAreDerivedFromTheQPs() throws {
        let configuration = try IBVFConfiguration(parsing: "ib-sw:qps=1000")
        #expect(configuration.shape == IBVFShape(
            ports: 1, gidsPerPort: 2, protectionDomains: 62, memoryRegions: 1000, completionQueues: 500,
            sharedReceiveQueues: 15, queuePairs: 1000))
        #expect(configuration.seed == 1)
        #expect(configuration.requiresSwitchoverAck)
        #expect(try IBVFConfiguration(parsing: "ib-sw") == IBVFConfiguration(queuePairs: 1000))
    }

    @Test func everyKeyCanBeSetAndSuffixesMultiply() throws {
        let configuration = try IBVFConfiguration(
            parsing: "ib-sw:qps=100k,mrs=4000,cqs=7,srqs=0,pds=3,ports=2,gids=4,seed=99,ack=0")
        #expect(configuration.shape == IBVFShape(
            ports: 2, gidsPerPort: 4, protectionDomains: 3, memoryRegions: 4000, completionQueues: 7,
            sharedReceiveQueues: 0, queuePairs: 100_000))
        #expect(configuration.seed == 99)
        #expect(!configuration.requiresSwitchoverAck)
        #expect(try IBVFConfiguration(parsing: configuration.spec) == configuration)
        #expect(try IBVFConfiguration(parsing: "ib-sw:qps=1m").shape.queuePairs == 1_000_000)
    }

    @Test func badSpecsSayWhatIsWrong() {
        func reason(_ spec: String) -> String? {
            do {
                _ = try IBVFConfiguration(parsing: spec)
                return nil
            } catch {
                guard case .invalidSpec(spec: spec, reason: let reason) = error else { return "\(error)" }
                return reason
            }
        }
        #expect(reason("ib-sw:qp=10") == "unknown key 'qp': known keys are qps, mrs, cqs, srqs, pds, ports, gids, seed, ack")
        #expect(reason("ib-sw:qps=abc")
            == "qps must be a whole number from 1 to 4000000 (a k or m suffix multiplies by 1000 or 1000000), got 'abc'")
        #expect(reason("ib-sw:qps=0")?.hasPrefix("qps must be a whole number from 1") == true)
        #expect(reason("ib-sw:ports=3")?.hasPrefix("ports must be a whole number from 1 to 2") == true)
        #expect(reason("ib-sw:qps=-5")?.hasPrefix("qps must be") == true)
        #expect(reason("ib-sw:qps=10,qps=20") == "'qps' is given twice")
        #expect(reason("ib-sw:qps") == "'qps' is not key=value (e.g. qps=1000)")
        #expect(reason("ib-sw:ack=maybe") == "ack must be 0 or 1, got 'maybe'")
        #expect(reason("ib-sw:seed=x") == "seed must be a whole number from 0 to 2^64-1, got 'x'")
        #expect(reason("ib-hw:qps=1") == "an ib-sw spec starts with 'ib-sw', e.g. ib-sw:qps=1000")
    }

    @Test func theFactoryMakesAnIBSoftwareProviderFromItsSpec() throws {
        let provider = try DeviceStateProviders.make(spec: "ib-sw:qps=64")
        #expect(provider.kind == "ib-sw")
        #expect(provider.name == "ib-sw:qps=64")
        #expect(provider.state == .running)
        #expect(provider.supportsPreCopy)
        #expect(provider.requiresSwitchoverAck)
        let ib = try #require(provider as? IBSoftwareDeviceStateProvider)
        #expect(ib.snapshot().queuePairs.count == 64)
        #expect(throws: DeviceStateError.self) { try DeviceStateProviders.make(spec: "ib-sw:qps=") }
    }
}
