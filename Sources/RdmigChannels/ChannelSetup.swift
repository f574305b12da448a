import RdmigTransport

/// The first SEND each router puts on a connection (frame type 0): where the peer may write
/// its credit and end-of-stream signals, and how big this side's receive buffers are (the
/// largest control frame the peer may send).
/// `package`: the fuzz targets (Tests/fuzz) decode it too.
package struct ChannelSetup: ControlMessage, Equatable {
    package static let typeCode: UInt16 = 0
    static let minimumEncodedSize = RemoteWindow.minimumEncodedSize + 8

    package var signalWindow: RemoteWindow
    package var receiveCount: UInt32
    package var receiveBufferSize: UInt32

    package init(signalWindow: RemoteWindow, receiveCount: UInt32, receiveBufferSize: UInt32) {
        self.signalWindow = signalWindow
        self.receiveCount = receiveCount
        self.receiveBufferSize = receiveBufferSize
    }

    package var wireType: UInt16 { Self.typeCode }
    package var wireName: String { "CHANNEL_SETUP" }

    package static func name(ofType type: UInt16) -> String? { type == typeCode ? "CHANNEL_SETUP" : nil }

    package func encodePayload(to writer: inout WireWriter) throws(WireError) {
        try writer.write(signalWindow)
        try writer.write(receiveCount, "receiveCount")
        try writer.write(receiveBufferSize, "receiveBufferSize")
    }

    package static func decode(type: UInt16, payload reader: inout WireReader) throws(WireError) -> ChannelSetup {
        guard type == typeCode else { throw .unknownMessageType(type) }
        let window = try reader.read(RemoteWindow.self)
        let count = try reader.readUInt32("receiveCount")
        let size = try reader.readUInt32("receiveBufferSize")
        guard size >= UInt32(ControlFrameHeader.size) else {
            throw .invalidValue(message: reader.messageName, field: "receiveBufferSize", detail: "\(size) bytes cannot hold a frame header")
        }
        return ChannelSetup(signalWindow: window, receiveCount: count, receiveBufferSize: size)
    }
}
