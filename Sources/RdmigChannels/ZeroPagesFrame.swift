/// A ZERO_PAGES message encoded from the page channel's preallocated run buffer, so sending
/// zero-page markers allocates nothing. It encodes exactly as `MigrationMessage.zeroPages`
/// and is decoded as that on the other side; it is never decoded as itself.
struct ZeroPagesFrame: ControlMessage, @unchecked Sendable {
    var iteration: UInt32
    var regionID: UInt32
    var runs: UnsafeBufferPointer<PageRun>

    var wireType: UInt16 { MigrationMessage.Kind.zeroPages.rawValue }
    var wireName: String { MigrationMessage.Kind.zeroPages.wireName }

    static func name(ofType type: UInt16) -> String? { nil }

    func encodePayload(to writer: inout WireWriter) throws(WireError) {
        try writer.write(iteration, "iteration")
        try writer.write(regionID, "regionID")
        try writer.writeCount(runs.count, "runs")
        for run in runs { try run.encode(to: &writer) }
    }

    static func decode(type: UInt16, payload: inout WireReader) throws(WireError) -> ZeroPagesFrame {
        throw .unknownMessageType(type)
    }
}
