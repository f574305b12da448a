/// Which channel a completion, work request or immediate belongs to: the top byte of every
/// work-request id and of every immediate this module posts. Both ends use the same id for
/// the two halves of one channel (a stream's sender and receiver, for example), so an
/// immediate tagged `k` is routed to the local half of channel `k`.
///
/// 0 and 1 are the router's and the control channel's; 2-127 are free for the layers above
/// (`pages`, `deviceState`, `qemuStream` and `bandwidthProbe` are the ones rdmig uses). Ids with the top bit
/// set are the router's internal halves and cannot be registered by callers.
public struct ChannelID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public init(_ rawValue: UInt8) { self.rawValue = rawValue }

    public static let router = ChannelID(0)
    public static let control = ChannelID(1)
    public static let pages = ChannelID(2)
    public static let deviceState = ChannelID(3)
    public static let qemuStream = ChannelID(4)
    /// QEMU mode's timed burst that measures the transport before QEMU's max-bandwidth is set.
    public static let bandwidthProbe = ChannelID(5)
    /// Proxy mode: the relayed connection's bytes from the source host to the destination's
    /// unix socket, and back.
    public static let proxyToDestination = ChannelID(6)
    public static let proxyToSource = ChannelID(7)

    /// The half of the control channel that receives (its work requests are its credit grants).
    static let controlReceiver = ChannelID(0x81)

    public var description: String {
        switch self {
        case .router: return "channel setup"
        case .control: return "control channel"
        case .controlReceiver: return "control channel (receiving)"
        case .pages: return "page channel"
        case .deviceState: return "device-state stream"
        case .qemuStream: return "QEMU stream"
        case .bandwidthProbe: return "bandwidth probe"
        case .proxyToDestination: return "proxy stream to the destination"
        case .proxyToSource: return "proxy stream to the source"
        default: return "channel \(rawValue)"
        }
    }
}
