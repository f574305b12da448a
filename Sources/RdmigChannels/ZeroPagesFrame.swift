/// A ZERO_PAGES message encoded from the page channel's preallocated run buffer, so sending
/// zero-page markers allocates nothing. It encodes exactly as `MigrationMessage.zeroPages`
/// and is decoded as that on the other side; it is never decoded as itself.
/// `package`: the fuzz targets (Tests/fuzz) check that it encodes as the decoded message.
package struct ZeroPagesFrame: ControlMessage, @unchecked Sendable {
    package var iteration: UInt32
    package var regionID: UInt32
    package var runs: UnsafeBufferPointer<PageRun>

    package init(iteration: UInt32, regionID: UInt32, runs: UnsafeBufferPointer<PageRun>) {
        self.iteration = iteration
        self.regionID = regionID
        self.runs = runs
    }

    package var wireType: UInt16 { MigrationMessage.Kind.zeroPages.rawValue }
    package var wireName: String { MigrationMessage.Kind.zeroPages.wireName }

    package static func name(ofType type: UInt16) -> String? { nil }

    package func encodePayload(to writer: inout WireWriter) throws(WireError) {
        try writer.write(iteration, "iteration")
        try writer.write(regionID, "regionID")
        try writer.writeCount(runs.count, "runs")
        for run in runs { try run.encode(to: &writer) }
    }

    package static func decode(type: UInt16, payload: inout WireReader) throws(WireError) -> ZeroPagesFrame {
        throw .unknownMessageType(type)
    }
}
