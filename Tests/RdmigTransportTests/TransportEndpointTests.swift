import Testing
import RdmigTransport

@Suite struct TransportEndpointParsing {
    @Test func ipv4AndIPv6AndNames() throws {
        #expect(try TransportEndpoint(parsing: "127.0.0.1:7471") == TransportEndpoint(host: "127.0.0.1", port: 7471))
        #expect(try TransportEndpoint(parsing: "[::1]:7471") == TransportEndpoint(host: "::1", port: 7471))
        #expect(try TransportEndpoint(parsing: "node7:0") == TransportEndpoint(host: "node7", port: 0))
        #expect(TransportEndpoint(host: "::1", port: 9).description == "[::1]:9")
    }

    @Test func badAddressesNameTheProblem() {
        #expect(throws: TransportEndpoint.ParseError.missingPort("127.0.0.1")) { try TransportEndpoint(parsing: "127.0.0.1") }
        #expect(throws: TransportEndpoint.ParseError.invalidPort("h:70000")) { try TransportEndpoint(parsing: "h:70000") }
        #expect(throws: TransportEndpoint.ParseError.missingPort("::1:80")) { try TransportEndpoint(parsing: "::1:80") }
        #expect(throws: TransportEndpoint.ParseError.emptyHost(":80")) { try TransportEndpoint(parsing: ":80") }
    }
}
