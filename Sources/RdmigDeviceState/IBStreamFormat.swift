/// The ib-sw device stream: what an ib-sw VF's "data fd" yields and accepts. The transport
/// treats it as opaque bytes (chunk record payloads); only the ib-sw provider reads it.
///
/// A sequence of entries, each an 8-byte header then a body, little-endian:
/// ```
/// entry header: type u8, reserved u8 (0), body length u16, index u32
/// type 0x01 stream header  body: magic "IBSW" u32, version u16, reserved u16,
///                                 ports, gids per port, pds, mrs, cqs, srqs, qps (u32 each)
/// type 0x10..0x17 object   body: the object's fixed encoding (IBObjectKind gives the type),
///                                 index = its slot in the table
/// type 0x7F end            body: DeviceStateDigest of the source's final state (28 bytes)
/// ```
/// A session's stream is: the stream header, every object once (the initial data), objects
/// again as they change (dirty data, later entries replace earlier ones), and in STOP_COPY
/// the end entry. The destination rebuilds the tables and checks the digest.
enum IBStreamFormat {
    static let entryHeaderSize = 8
    static let headerType: UInt8 = 0x01
    static let endType: UInt8 = 0x7F
    /// "IBSW" read as a little-endian u32.
    static let magic: UInt32 = 0x5753_4249
    static let version: UInt16 = 1
    static let headerBodySize = 36
    static let endBodySize = DeviceStateDigest.encodedSize
    static let headerEntrySize = entryHeaderSize + headerBodySize
    static let endEntrySize = entryHeaderSize + endBodySize
    /// The largest entry: reassembly on the destination needs no more than this.
    static let maxEntrySize = entryHeaderSize + max(
        headerBodySize, endBodySize, IBObjectKind.allCases.map(\.bodySize).max()!)

    static func entrySize(_ kind: IBObjectKind) -> Int { entryHeaderSize + kind.bodySize }

    static func writeEntryHeader(type: UInt8, bodyLength: Int, index: UInt32, into writer: inout ByteWriter) {
        writer.u8(type)
        writer.u8(0)
        writer.u16(UInt16(bodyLength))
        writer.u32(index)
    }

    static func writeStreamHeader(_ shape: IBVFShape, into writer: inout ByteWriter) {
        writeEntryHeader(type: headerType, bodyLength: headerBodySize, index: 0, into: &writer)
        writer.u32(magic)
        writer.u16(version)
        writer.u16(0)
        for count in [
            shape.ports, shape.gidsPerPort, shape.protectionDomains, shape.memoryRegions, shape.completionQueues,
            shape.sharedReceiveQueues, shape.queuePairs,
        ] {
            writer.u32(UInt32(count))
        }
    }

    /// Parses a stream header body; the error text says what is wrong with it.
    static func parseStreamHeader(_ body: UnsafeRawBufferPointer) -> Result<IBVFShape, StreamHeaderError> {
        var reader = ByteReader(body)
        let foundMagic = reader.u32()
        guard foundMagic == magic else { return .failure(.init(reason: "stream header magic \(hex(foundMagic)) is not 'IBSW'")) }
        let foundVersion = reader.u16()
        guard foundVersion == version else {
            return .failure(.init(reason: "ib-sw stream version \(foundVersion), this rdmig loads version \(version)"))
        }
        reader.skip(2)
        let counts = (0..<7).map { _ in Int(reader.u32()) }
        return .success(IBVFShape(
            ports: counts[0], gidsPerPort: counts[1], protectionDomains: counts[2], memoryRegions: counts[3],
            completionQueues: counts[4], sharedReceiveQueues: counts[5], queuePairs: counts[6]))
    }

    struct StreamHeaderError: Error {
        let reason: String
    }
}
