/// A registered memory region (an mlx4 MPT entry): its keys, the guest virtual range it
/// covers, its access rights and its PD. On mlx4 a key is the MPT index shifted left by 8
/// with a variant byte that changes on every re-registration, so a stale key is refused.
public struct IBMemoryRegion: Equatable, Sendable, IBStateObject {
    public var lkey: UInt32
    public var rkey: UInt32
    public var pdn: UInt32
    /// ibv_access_flags: LOCAL_WRITE 1, REMOTE_WRITE 2, REMOTE_READ 4, REMOTE_ATOMIC 8.
    public var access: UInt32
    public var address: UInt64
    public var length: UInt64
    public var pageShift: UInt8

    static let kind = IBObjectKind.memoryRegion
    static let bodySize = 33
    static let empty = IBMemoryRegion(lkey: 0, rkey: 0, pdn: 0, access: 0, address: 0, length: 0, pageShift: 0)

    public init(lkey: UInt32, rkey: UInt32, pdn: UInt32, access: UInt32, address: UInt64, length: UInt64, pageShift: UInt8) {
        self.lkey = lkey
        self.rkey = rkey
        self.pdn = pdn
        self.access = access
        self.address = address
        self.length = length
        self.pageShift = pageShift
    }

    func encode(into writer: inout ByteWriter) {
        writer.u32(lkey)
        writer.u32(rkey)
        writer.u32(pdn)
        writer.u32(access)
        writer.u64(address)
        writer.u64(length)
        writer.u8(pageShift)
    }

    init(decoding reader: inout ByteReader) throws(IBFieldError) {
        lkey = reader.u32()
        rkey = reader.u32()
        pdn = reader.u32()
        access = reader.u32()
        address = reader.u64()
        length = reader.u64()
        pageShift = reader.u8()
    }

    var label: String { "mr \(hex(lkey >> 8))" }
}
