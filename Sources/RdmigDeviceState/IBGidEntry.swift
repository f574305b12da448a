/// One entry of a port's GID table.
public struct IBGidEntry: Equatable, Sendable, IBStateObject {
    public var port: UInt8
    public var index: UInt8
    public var gid: IBGid

    static let kind = IBObjectKind.gid
    static let bodySize = 18
    static let empty = IBGidEntry(port: 0, index: 0, gid: .zero)

    public init(port: UInt8, index: UInt8, gid: IBGid) {
        self.port = port
        self.index = index
        self.gid = gid
    }

    func encode(into writer: inout ByteWriter) {
        writer.u8(port)
        writer.u8(index)
        writer.u64(gid.subnetPrefix)
        writer.u64(gid.interfaceID)
    }

    init(decoding reader: inout ByteReader) throws(IBFieldError) {
        port = reader.u8()
        index = reader.u8()
        gid = IBGid(subnetPrefix: reader.u64(), interfaceID: reader.u64())
    }

    var label: String { "gid \(port)/\(index)" }
}
