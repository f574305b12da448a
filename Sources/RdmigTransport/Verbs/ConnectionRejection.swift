/// Why a listener refused a connect request, carried in the RDMA CM reject private data so
/// the client reports the listener's own words (rdma_reject(3); at most 148 bytes reach the
/// peer for RDMA_PS_TCP over InfiniBand/RoCE, the IB CM REJ private data size).
///
/// Layout, big-endian:
///
///     0  magic   "RDMR" (0x52444D52)
///     4  reason  UInt16
///     6  version UInt16   the rejecting side's current protocol version
///     8  length  UInt8    bytes of message that follow
///     9  message UTF-8, at most `maxMessageBytes`
public struct ConnectionRejection: Error, Equatable, Sendable, CustomStringConvertible {
    public static let magic: UInt32 = 0x5244_4D52
    public static let maxEncodedSize = 148
    static let headerSize = 9
    public static let maxMessageBytes = maxEncodedSize - headerSize

    public enum Reason: UInt16, Sendable {
        /// The request carried no rdmig hello.
        case notAnRdmigPeer = 1
        /// The request's protocol version is not one this side speaks.
        case unsupportedVersion = 2
        /// The listener could not create the queue pair (device limits, memory).
        case resourcesUnavailable = 3
        /// The listener is closing.
        case shuttingDown = 4
        /// A reason this build does not know (from a newer peer).
        case other = 0xFFFF
    }

    public var reason: Reason
    public var version: UInt16
    public var message: String

    public init(reason: Reason, version: UInt16 = ConnectionHello.currentVersion, message: String) {
        self.reason = reason
        self.version = version
        self.message = message
    }

    public var description: String { message }

    /// The bytes for rdma_reject; the message is cut at a character boundary to fit.
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendBigEndian(ConnectionRejection.magic)
        bytes.appendBigEndian(reason.rawValue)
        bytes.appendBigEndian(version)
        let text = ConnectionRejection.truncated(message, toBytes: ConnectionRejection.maxMessageBytes)
        bytes.append(UInt8(text.count))
        bytes.append(contentsOf: text)
        return bytes
    }

    /// Reads a rejection from REJECTED private data; nil when the bytes are not one (the
    /// CM itself rejected, or the listener is not rdmig).
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count >= ConnectionRejection.headerSize,
              bytes.readBigEndian(UInt32.self, at: 0) == ConnectionRejection.magic
        else { return nil }
        let length = Int(bytes[8])
        guard ConnectionRejection.headerSize + length <= bytes.count else { return nil }
        self.reason = Reason(rawValue: bytes.readBigEndian(UInt16.self, at: 4)) ?? .other
        self.version = bytes.readBigEndian(UInt16.self, at: 6)
        self.message = String(decoding: bytes[ConnectionRejection.headerSize..<(ConnectionRejection.headerSize + length)], as: UTF8.self)
    }

    static func truncated(_ text: String, toBytes limit: Int) -> [UInt8] {
        var result: [UInt8] = []
        for character in text {
            let utf8 = Array(character.utf8)
            if result.count + utf8.count > limit { break }
            result += utf8
        }
        return result
    }
}
