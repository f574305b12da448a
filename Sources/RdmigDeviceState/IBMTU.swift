/// An InfiniBand MTU (enum ibv_mtu values: 1 = 256 bytes ... 5 = 4096 bytes).
public enum IBMTU: UInt8, Sendable, CaseIterable {
    case mtu256 = 1
    case mtu512 = 2
    case mtu1024 = 3
    case mtu2048 = 4
    case mtu4096 = 5

    public var bytes: Int { 128 << Int(rawValue) }
}
