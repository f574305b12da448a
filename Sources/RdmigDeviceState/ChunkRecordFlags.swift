/// Per-record flags.
public struct ChunkRecordFlags: OptionSet, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The last record of this device (tag) in this phase; in stopcopy it is the device's
    /// end of stream (the data fd's read() returned 0).
    public static let endOfPhase = ChunkRecordFlags(rawValue: 1 << 0)
    /// With this record the source has sent all of the device's initial pre-copy bytes
    /// (precopy info reported initial_bytes 0): once the destination has loaded it, it may
    /// send the switchover acknowledgement.
    public static let initialDataComplete = ChunkRecordFlags(rawValue: 1 << 1)

    /// Bits version 1 defines; a record with any other bit set is refused, so a newer
    /// sender's meaning is never silently dropped.
    public static let known: ChunkRecordFlags = [.endOfPhase, .initialDataComplete]

    public var description: String {
        var names: [String] = []
        if contains(.endOfPhase) { names.append("end-of-phase") }
        if contains(.initialDataComplete) { names.append("initial-data-complete") }
        let unknown = rawValue & ~ChunkRecordFlags.known.rawValue
        if unknown != 0 { names.append("0x" + String(unknown, radix: 16)) }
        return names.isEmpty ? "none" : names.joined(separator: ",")
    }
}
