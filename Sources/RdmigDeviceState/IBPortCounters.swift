/// A port's performance counters (PortXmitData/PortRcvData count 4-byte words, as in the
/// IB PMA; the packet counters count packets).
public struct IBPortCounters: Equatable, Sendable, IBStateObject {
    public var port: UInt8
    public var transmitData: UInt64
    public var receiveData: UInt64
    public var transmitPackets: UInt64
    public var receivePackets: UInt64
    public var symbolErrors: UInt32
    public var linkDowned: UInt32

    static let kind = IBObjectKind.counters
    static let bodySize = 41
    static let empty = IBPortCounters(
        port: 0, transmitData: 0, receiveData: 0, transmitPackets: 0, receivePackets: 0, symbolErrors: 0, linkDowned: 0)

    public init(
        port: UInt8, transmitData: UInt64, receiveData: UInt64, transmitPackets: UInt64, receivePackets: UInt64,
        symbolErrors: UInt32, linkDowned: UInt32
    ) {
        self.port = port
        self.transmitData = transmitData
        self.receiveData = receiveData
        self.transmitPackets = transmitPackets
        self.receivePackets = receivePackets
        self.symbolErrors = symbolErrors
        self.linkDowned = linkDowned
    }

    func encode(into writer: inout ByteWriter) {
        writer.u8(port)
        writer.u64(transmitData)
        writer.u64(receiveData)
        writer.u64(transmitPackets)
        writer.u64(receivePackets)
        writer.u32(symbolErrors)
        writer.u32(linkDowned)
    }

    init(decoding reader: inout ByteReader) throws(IBFieldError) {
        port = reader.u8()
        transmitData = reader.u64()
        receiveData = reader.u64()
        transmitPackets = reader.u64()
        receivePackets = reader.u64()
        symbolErrors = reader.u32()
        linkDowned = reader.u32()
    }

    var label: String { "counters port \(port)" }
}
