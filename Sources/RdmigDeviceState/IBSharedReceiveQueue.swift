/// A shared receive queue: its limits, the low-water mark that raises the limit event,
/// and the WQE counter the guest has posted up to.
public struct IBSharedReceiveQueue: Equatable, Sendable, IBStateObject {
    public var srqn: UInt32
    public var pdn: UInt32
    public var maxWR: UInt32
    public var maxSGE: UInt32
    public var limit: UInt32
    public var wqeCounter: UInt16

    static let kind = IBObjectKind.sharedReceiveQueue
    static let bodySize = 22
    static let empty = IBSharedReceiveQueue(srqn: 0, pdn: 0, maxWR: 0, maxSGE: 0, limit: 0, wqeCounter: 0)

    public init(srqn: UInt32, pdn: UInt32, maxWR: UInt32, maxSGE: UInt32, limit: UInt32, wqeCounter: UInt16) {
        self.srqn = srqn
        self.pdn = pdn
        self.maxWR = maxWR
        self.maxSGE = maxSGE
        self.limit = limit
        self.wqeCounter = wqeCounter
    }

    func encode(into writer: inout ByteWriter) {
        writer.u32(srqn)
        writer.u32(pdn)
        writer.u32(maxWR)
        writer.u32(maxSGE)
        writer.u32(limit)
        writer.u16(wqeCounter)
    }

    init(decoding reader: inout ByteReader) throws(IBFieldError) {
        srqn = reader.u32()
        pdn = reader.u32()
        maxWR = reader.u32()
        maxSGE = reader.u32()
        limit = reader.u32()
        wqeCounter = reader.u16()
    }

    var label: String { "srq \(hex(srqn))" }
}
