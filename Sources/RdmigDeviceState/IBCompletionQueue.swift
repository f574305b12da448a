/// A completion queue: its number, size, the consumer index the guest has polled up to,
/// its event queue and whether it is armed for a notification.
public struct IBCompletionQueue: Equatable, Sendable, IBStateObject {
    public var cqn: UInt32
    public var entries: UInt32
    public var consumerIndex: UInt32
    public var eqn: UInt32
    public var armed: Bool

    static let kind = IBObjectKind.completionQueue
    static let bodySize = 17
    static let empty = IBCompletionQueue(cqn: 0, entries: 0, consumerIndex: 0, eqn: 0, armed: false)

    public init(cqn: UInt32, entries: UInt32, consumerIndex: UInt32, eqn: UInt32, armed: Bool) {
        self.cqn = cqn
        self.entries = entries
        self.consumerIndex = consumerIndex
        self.eqn = eqn
        self.armed = armed
    }

    func encode(into writer: inout ByteWriter) {
        writer.u32(cqn)
        writer.u32(entries)
        writer.u32(consumerIndex)
        writer.u32(eqn)
        writer.u8(armed ? 1 : 0)
    }

    init(decoding reader: inout ByteReader) throws(IBFieldError) {
        cqn = reader.u32()
        entries = reader.u32()
        consumerIndex = reader.u32()
        eqn = reader.u32()
        let rawArmed = reader.u8()
        guard rawArmed <= 1 else { throw IBFieldError(field: "armed", value: UInt64(rawArmed)) }
        armed = rawArmed == 1
    }

    var label: String { "cq \(hex(cqn))" }
}
