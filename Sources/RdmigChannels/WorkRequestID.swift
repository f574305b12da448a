/// Work-request ids: channel in the top byte, the channel's own sequence number below.
enum WorkRequestID {
    static let sequenceMask: UInt64 = (1 << 56) - 1

    @inline(__always)
    static func make(_ channel: ChannelID, _ sequence: UInt64) -> UInt64 {
        UInt64(channel.rawValue) << 56 | (sequence & sequenceMask)
    }

    @inline(__always)
    static func channel(of id: UInt64) -> ChannelID { ChannelID(UInt8(truncatingIfNeeded: id >> 56)) }

    @inline(__always)
    static func sequence(of id: UInt64) -> UInt64 { id & sequenceMask }
}
