/// A 128-bit InfiniBand GID: subnet prefix (high 64 bits) and interface id (low 64 bits).
public struct IBGid: Hashable, Sendable, CustomStringConvertible {
    public var subnetPrefix: UInt64
    public var interfaceID: UInt64

    public init(subnetPrefix: UInt64, interfaceID: UInt64) {
        self.subnetPrefix = subnetPrefix
        self.interfaceID = interfaceID
    }

    public static let zero = IBGid(subnetPrefix: 0, interfaceID: 0)

    /// The IPv6-style form ibv_devinfo prints: eight groups of four hex digits.
    public var description: String {
        var groups: [String] = []
        for word in [subnetPrefix, interfaceID] {
            for shift in stride(from: 48, through: 0, by: -16) {
                let group = String((word >> UInt64(shift)) & 0xFFFF, radix: 16)
                groups.append(String(repeating: "0", count: 4 - group.count) + group)
            }
        }
        return groups.joined(separator: ":")
    }
}
