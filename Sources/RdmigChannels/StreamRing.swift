import RdmigTransport

/// What a byte-stream receiver tells its sender: which channel, and the ring of slots the
/// sender may write into (one exported window, `slotCount` slots of `slotSize` bytes).
public struct StreamRing: Hashable, Sendable {
    public var channel: ChannelID
    public var window: RemoteWindow
    public var slotCount: Int
    public var slotSize: Int

    public init(channel: ChannelID, window: RemoteWindow, slotCount: Int, slotSize: Int) {
        self.channel = channel
        self.window = window
        self.slotCount = slotCount
        self.slotSize = slotSize
    }
}

extension StreamRing: WireCodable {
    public static let minimumEncodedSize = 1 + 20 + 8
    /// What a receiver may announce (a `ByteStreamReceiver` makes no other): the sender
    /// allocates and registers slotCount × slotSize bytes of staging, so both are bounded
    /// before anything multiplies them.
    public static let slotCounts = 1...(1 << 20)
    public static let slotSizes = 64...(1 << 30)

    public func encode(to writer: inout WireWriter) throws(WireError) {
        try writer.write(channel.rawValue, "channel")
        try writer.write(window)
        try writer.write(UInt32(slotCount), "slotCount")
        try writer.write(UInt32(slotSize), "slotSize")
    }

    public init(from reader: inout WireReader) throws(WireError) {
        channel = ChannelID(try reader.readUInt8("channel"))
        window = try reader.read(RemoteWindow.self)
        slotCount = Int(try reader.readUInt32("slotCount"))
        slotSize = Int(try reader.readUInt32("slotSize"))
        guard Self.slotCounts.contains(slotCount) else {
            throw .invalidValue(message: reader.messageName, field: "slotCount",
                                detail: "\(slotCount) slots; a ring has \(Self.slotCounts.lowerBound) to \(Self.slotCounts.upperBound)")
        }
        guard Self.slotSizes.contains(slotSize) else {
            throw .invalidValue(message: reader.messageName, field: "slotSize",
                                detail: "\(slotSize)-byte slots; a slot holds \(Self.slotSizes.lowerBound) to \(Self.slotSizes.upperBound) bytes")
        }
        guard UInt64(slotCount) * UInt64(slotSize) <= window.length else {
            throw .invalidValue(message: reader.messageName, field: "window.length",
                                detail: "\(slotCount) slots of \(slotSize) bytes do not fit a \(window.length)-byte window")
        }
    }
}

extension RemoteWindow: WireCodable {
    public static let minimumEncodedSize = 20

    public func encode(to writer: inout WireWriter) throws(WireError) {
        try writer.write(address, "window.address")
        try writer.write(length, "window.length")
        try writer.write(remoteKey, "window.remoteKey")
    }

    public init(from reader: inout WireReader) throws(WireError) {
        let address = try reader.readUInt64("window.address")
        let length = try reader.readUInt64("window.length")
        let remoteKey = try reader.readUInt32("window.remoteKey")
        guard address.addingReportingOverflow(length).overflow == false else {
            throw .invalidValue(message: reader.messageName, field: "window.length", detail: "window at 0x\(String(address, radix: 16)) of \(length) bytes wraps around")
        }
        self.init(address: address, length: length, remoteKey: remoteKey)
    }
}
