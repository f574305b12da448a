/// A value with a fixed little-endian wire form, written field by field with `WireWriter`.
public protocol WireEncodable {
    func encode(to writer: inout WireWriter) throws(WireError)
}

/// A value read back field by field with `WireReader`.
public protocol WireDecodable {
    init(from reader: inout WireReader) throws(WireError)
    /// The fewest bytes one value occupies; bounds element counts before allocating.
    static var minimumEncodedSize: Int { get }
}

public typealias WireCodable = WireEncodable & WireDecodable

/// A message the control channel carries: a type code in the frame header and a payload.
/// `MigrationMessage` is the migration protocol's catalogue; other protocols may add theirs.
public protocol ControlMessage: Sendable {
    /// The frame header's type code (0 is reserved for the router's setup frame).
    var wireType: UInt16 { get }
    /// The protocol's name for the message (`HELLO`, `ZERO_PAGES`), for errors and logs.
    var wireName: String { get }
    func encodePayload(to writer: inout WireWriter) throws(WireError)
    /// Decodes the payload of a frame of type `type`; the reader's `messageName` is set by
    /// the caller to what `name(ofType:)` returns.
    static func decode(type: UInt16, payload: inout WireReader) throws(WireError) -> Self
    /// The name of type code `type`, or nil when this protocol has no such message.
    static func name(ofType type: UInt16) -> String?
}
