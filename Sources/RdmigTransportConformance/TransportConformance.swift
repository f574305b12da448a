import RdmigTransport

/// The behaviours every transport backend must show, written once against the public Transport
/// API (`any TransportBackend`), so the same cases run against `tcp` here and `verbs` wherever
/// an RDMA device exists. Every case listens on `environment.host` with port 0 and finishes in
/// well under two seconds; waits are bounded by `ConformancePeers.guardTime` as a failure guard,
/// never used for pacing.
public enum TransportConformance {
    public static let cases: [ConformanceCase] = [
        ConformanceCase("connectAndAcceptGiveAConnectedPair", run: connectAndAcceptGiveAConnectedPair),
        ConformanceCase("severalConnectionsToOneListenerWorkIndependently", run: severalConnectionsToOneListenerWorkIndependently),
        ConformanceCase("severalConnectionsWriteIntoOneWindowConcurrently", run: severalConnectionsWriteIntoOneWindowConcurrently),
        ConformanceCase("connectToAClosedPortIsRefused", run: connectToAClosedPortIsRefused),
        ConformanceCase("ipv6ConnectionWorks", run: ipv6ConnectionWorks),
        ConformanceCase("writeIsVisibleAfterItsCompletion", run: writeIsVisibleAfterItsCompletion),
        ConformanceCase("immediateArrivesAfterAllPrecedingWrites", run: immediateArrivesAfterAllPrecedingWrites),
        ConformanceCase("writesOfMixedSizesArriveWholeAndInOrder", run: writesOfMixedSizesArriveWholeAndInOrder),
        ConformanceCase("largeTransferArrivesByteForByte", run: largeTransferArrivesByteForByte),
        ConformanceCase("manyWritesInFlightWithSelectiveSignalling", run: manyWritesInFlightWithSelectiveSignalling),
        ConformanceCase("sendAndReceiveCarryControlMessages", run: sendAndReceiveCarryControlMessages),
        ConformanceCase("receivesPostedInGroupsOfEverySizeAreAllUsed", run: receivesPostedInGroupsOfEverySizeAreAllUsed),
        ConformanceCase("sendLargerThanThePostedReceiveFailsBothSides", run: sendLargerThanThePostedReceiveFailsBothSides),
        ConformanceCase("writeOutsideTheWindowIsRefusedAndTearsDownTheConnection", run: writeOutsideTheWindowIsRefusedAndTearsDownTheConnection),
        ConformanceCase("writeWithAnUnknownKeyIsRefused", run: writeWithAnUnknownKeyIsRefused),
        ConformanceCase("writeIntoADeregisteredWindowIsRefused", run: writeIntoADeregisteredWindowIsRefused),
        ConformanceCase("orderlyCloseIsReportedToThePeer", run: orderlyCloseIsReportedToThePeer),
        ConformanceCase("peerDisconnectMidTransferIsReportedOnBothSides", run: peerDisconnectMidTransferIsReportedOnBothSides),
    ]

    /// The case called `name`, for running one by name (`rdmig selftest transport --case NAME`).
    public static func `case`(named name: String) -> ConformanceCase? {
        cases.first { $0.name == name }
    }
}
