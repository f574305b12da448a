/// The versioned hello both sides put in the RDMA CM private data: the connect request
/// carries the client's, the accept (REP) carries the listener's.
///
/// It is checked before a queue pair is exposed to the peer: the listener rejects a request
/// with another version (or no rdmig magic at all) with a `ConnectionRejection` in the reject
/// private data, so the client can say why. Layout, big-endian, 8 bytes (rdma_connect(3):
/// at most 56 bytes of private data for RDMA_PS_TCP; the CM pads what arrives with zeros,
/// so trailing bytes are ignored):
///
///     0  magic   "RDMG" (0x52444D47)
///     4  version UInt16
///     6  flags   UInt16
public struct ConnectionHello: Equatable, Sendable, CustomStringConvertible {
    public static let magic: UInt32 = 0x5244_4D47
    /// The transport protocol version this build speaks.
    public static let currentVersion: UInt16 = 1
    /// The versions this build accepts from a peer. Any change to the wire behaviour of the
    /// verbs transport that a peer must know about bumps `currentVersion`.
    public static let supportedVersions: ClosedRange<UInt16> = 1...1
    public static let encodedSize = 8

    /// Advisory capabilities. Flags a side does not know are ignored, so adding one is not a
    /// version change; anything a peer must understand is.
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
    }

    public var version: UInt16
    public var flags: Flags

    public init(version: UInt16 = ConnectionHello.currentVersion, flags: Flags = []) {
        self.version = version
        self.flags = flags
    }

    public var description: String { "rdmig verbs hello v\(version) flags 0x\(String(flags.rawValue, radix: 16))" }

    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ConnectionHello.encodedSize)
        bytes.appendBigEndian(ConnectionHello.magic)
        bytes.appendBigEndian(version)
        bytes.appendBigEndian(flags.rawValue)
        return bytes
    }

    public enum DecodingError: Error, Equatable, Sendable, CustomStringConvertible {
        /// Fewer bytes than a hello: the peer sent no (or foreign) private data.
        case tooShort(Int)
        /// The bytes are not an rdmig hello.
        case wrongMagic(UInt32)

        public var description: String {
            switch self {
            case .tooShort(let count):
                return "the peer sent \(count) bytes of connection private data, not an rdmig hello (\(ConnectionHello.encodedSize) bytes)"
            case .wrongMagic(let magic):
                return "the peer's connection private data starts with 0x\(String(magic, radix: 16)), not the rdmig hello magic 0x\(String(ConnectionHello.magic, radix: 16)): it is not an rdmig peer"
            }
        }
    }

    public init(decoding bytes: [UInt8]) throws(DecodingError) {
        guard bytes.count >= ConnectionHello.encodedSize else { throw .tooShort(bytes.count) }
        let magic = bytes.readBigEndian(UInt32.self, at: 0)
        guard magic == ConnectionHello.magic else { throw .wrongMagic(magic) }
        self.version = bytes.readBigEndian(UInt16.self, at: 4)
        self.flags = Flags(rawValue: bytes.readBigEndian(UInt16.self, at: 6))
    }

    /// The listener's decision on a connect request's private data: the peer's hello, or the
    /// rejection to send back (before any queue pair or memory is exposed).
    public static func evaluate(request bytes: [UInt8]) -> Result<ConnectionHello, ConnectionRejection> {
        let hello: ConnectionHello
        do {
            hello = try ConnectionHello(decoding: bytes)
        } catch {
            return .failure(ConnectionRejection(reason: .notAnRdmigPeer, message: error.description))
        }
        guard supportedVersions.contains(hello.version) else {
            return .failure(ConnectionRejection(reason: .unsupportedVersion, message: versionMismatchMessage(peer: hello.version)))
        }
        return .success(hello)
    }

    static func versionMismatchMessage(peer: UInt16) -> String {
        let ours = supportedVersions.lowerBound == supportedVersions.upperBound
            ? "version \(supportedVersions.lowerBound)"
            : "versions \(supportedVersions.lowerBound)-\(supportedVersions.upperBound)"
        return "rdmig verbs protocol version \(peer) is not supported here (this side speaks \(ours)): run the same rdmig release on both hosts"
    }
}

extension [UInt8] {
    mutating func appendBigEndian<Value: FixedWidthInteger>(_ value: Value) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }

    func readBigEndian<Value: FixedWidthInteger>(_: Value.Type, at offset: Int) -> Value {
        var value: Value = 0
        for index in 0..<MemoryLayout<Value>.size {
            value = value << 8 | Value(self[offset + index])
        }
        return value
    }
}
