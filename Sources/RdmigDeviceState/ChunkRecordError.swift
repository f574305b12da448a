/// Why a chunk record was refused, naming the record (seq) and where it starts in the
/// stream (byte offset).
public enum ChunkRecordError: Error, CustomStringConvertible, Equatable, Sendable {
    case badMagic(offset: UInt64, found: UInt32)
    case unsupportedVersion(offset: UInt64, found: UInt16, supported: UInt16)
    case headerChecksumMismatch(offset: UInt64, stored: UInt32, computed: UInt32)
    case unknownPhase(seq: UInt64, offset: UInt64, raw: UInt8)
    case unknownFlags(seq: UInt64, offset: UInt64, raw: UInt8)
    case payloadTooLarge(seq: UInt64, offset: UInt64, length: UInt32, limit: Int)
    case outOfOrder(seq: UInt64, expected: UInt64, offset: UInt64)
    case phaseWentBackwards(seq: UInt64, offset: UInt64)
    case payloadChecksumMismatch(seq: UInt64, offset: UInt64, stored: UInt32, computed: UInt32)
    /// The stream ended inside a record: `have` of its `need` bytes arrived. `seq` is nil
    /// when not even the header was complete.
    case truncated(seq: UInt64?, offset: UInt64, have: Int, need: Int)
    /// Encoder: the caller's buffer cannot hold the record.
    case bufferTooSmall(needed: Int, available: Int)
    /// Receiver: the record names a device nobody registered.
    case unknownTag(seq: UInt64, offset: UInt64, tag: UInt32)
    /// Receiver: a record for a device whose stop-copy stream already ended.
    case recordAfterEnd(seq: UInt64, offset: UInt64, tag: UInt32)

    public var description: String {
        switch self {
        case .badMagic(let offset, let found):
            return "not a device-state record at byte \(offset): magic 0x\(String(found, radix: 16)) is not 'RDVS' "
                + "(the stream is out of step or is not rdmig device state)"
        case .unsupportedVersion(let offset, let found, let supported):
            return "device-state record at byte \(offset) has format version \(found); this rdmig reads version "
                + "\(supported): run the same rdmig version on both hosts"
        case .headerChecksumMismatch(let offset, let stored, let computed):
            return "device-state record header at byte \(offset) is corrupt: header crc32c 0x\(String(stored, radix: 16)) "
                + "!= computed 0x\(String(computed, radix: 16))"
        case .unknownPhase(let seq, let offset, let raw):
            return "device-state record \(seq) at byte \(offset) has unknown phase \(raw) (1 precopy, 2 stopcopy)"
        case .unknownFlags(let seq, let offset, let raw):
            return "device-state record \(seq) at byte \(offset) has unknown flags 0x\(String(raw, radix: 16))"
        case .payloadTooLarge(let seq, let offset, let length, let limit):
            return "device-state record \(seq) at byte \(offset) claims \(length) payload bytes, over the limit of \(limit)"
        case .outOfOrder(let seq, let expected, let offset):
            return "device-state record \(seq) at byte \(offset) is out of order: expected record \(expected) "
                + (seq > expected ? "(records \(expected)..<\(seq) are missing)" : "(duplicate or replayed record)")
        case .phaseWentBackwards(let seq, let offset):
            return "device-state record \(seq) at byte \(offset) is a precopy record after stop-copy began"
        case .payloadChecksumMismatch(let seq, let offset, let stored, let computed):
            return "device-state record \(seq) at byte \(offset) is corrupt: payload crc32c 0x\(String(stored, radix: 16)) "
                + "!= computed 0x\(String(computed, radix: 16))"
        case .truncated(let seq, let offset, let have, let need):
            let which = seq.map { "record \($0)" } ?? "record header"
            return "device-state stream ends inside \(which) at byte \(offset): \(have) of \(need) bytes arrived"
        case .bufferTooSmall(let needed, let available):
            return "device-state record needs \(needed) bytes but the buffer holds \(available)"
        case .unknownTag(let seq, let offset, let tag):
            return "device-state record \(seq) at byte \(offset) is for device tag \(tag), which this side does not have"
        case .recordAfterEnd(let seq, let offset, let tag):
            return "device-state record \(seq) at byte \(offset) for device tag \(tag) arrived after its end of stream"
        }
    }
}
