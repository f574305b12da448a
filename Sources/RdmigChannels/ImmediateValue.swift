/// Immediates: channel in the top byte; below it a 23-bit counter and a flag bit, whose
/// meaning is the channel's (stream: data sequence or end-of-stream; credit: limit or closed).
public enum ImmediateValue {
    public static let counterBits = 23
    public static let counterMask: UInt32 = (1 << 23) - 1
    public static let flag: UInt32 = 1 << 23

    @inline(__always)
    public static func make(_ channel: ChannelID, counter: UInt64, flag: Bool = false) -> UInt32 {
        UInt32(channel.rawValue) << 24 | (flag ? Self.flag : 0) | (UInt32(truncatingIfNeeded: counter) & counterMask)
    }

    @inline(__always)
    public static func channel(of immediate: UInt32) -> ChannelID { ChannelID(UInt8(truncatingIfNeeded: immediate >> 24)) }

    @inline(__always)
    public static func hasFlag(_ immediate: UInt32) -> Bool { immediate & flag != 0 }

    @inline(__always)
    public static func counter(of immediate: UInt32) -> UInt32 { immediate & counterMask }

    /// Rebuilds a full 64-bit counter from its low 23 bits, given a full value it is known to
    /// be within 2^22 of (RFC 1982 serial-number arithmetic). Credits and sequences move by at
    /// most a ring's worth between two immediates, far less than 2^22.
    @inline(__always)
    public static func extend(_ low: UInt32, near reference: UInt64) -> UInt64 {
        let modulus: UInt64 = 1 << 23
        let difference = (UInt64(low) &- reference) & (modulus - 1)
        return difference < modulus / 2 ? reference &+ difference : reference &- (modulus - difference)
    }
}
