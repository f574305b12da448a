/// A VF port's attributes a guest sees through ibv_query_port.
public struct IBPort: Equatable, Sendable, IBStateObject {
    public var portNumber: UInt8
    public var state: IBPortState
    public var lid: UInt16
    public var smLid: UInt16
    public var lmc: UInt8
    public var activeMTU: IBMTU
    public var pkey: UInt16
    public var gidTableLength: UInt8

    static let kind = IBObjectKind.port
    static let bodySize = 11
    static let empty = IBPort(
        portNumber: 0, state: .down, lid: 0, smLid: 0, lmc: 0, activeMTU: .mtu256, pkey: 0, gidTableLength: 0)

    public init(
        portNumber: UInt8, state: IBPortState, lid: UInt16, smLid: UInt16, lmc: UInt8, activeMTU: IBMTU,
        pkey: UInt16, gidTableLength: UInt8
    ) {
        self.portNumber = portNumber
        self.state = state
        self.lid = lid
        self.smLid = smLid
        self.lmc = lmc
        self.activeMTU = activeMTU
        self.pkey = pkey
        self.gidTableLength = gidTableLength
    }

    func encode(into writer: inout ByteWriter) {
        writer.u8(portNumber)
        writer.u8(state.rawValue)
        writer.u8(lmc)
        writer.u8(activeMTU.rawValue)
        writer.u16(lid)
        writer.u16(smLid)
        writer.u16(pkey)
        writer.u8(gidTableLength)
    }

    init(decoding reader: inout ByteReader) throws(IBFieldError) {
        portNumber = reader.u8()
        state = try decodeEnum(IBPortState.self, reader.u8(), field: "state")
        lmc = reader.u8()
        activeMTU = try decodeEnum(IBMTU.self, reader.u8(), field: "activeMTU")
        lid = reader.u16()
        smLid = reader.u16()
        pkey = reader.u16()
        gidTableLength = reader.u8()
    }

    var label: String { "port \(portNumber)" }
}
