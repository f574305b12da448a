/// What the transport benchmark's receiver found in its window after the final immediate —
/// RC ordering makes every earlier WRITE visible by then — sent back as the run's answer.
///
/// The count is read from the window, not from the configuration: it is one past the highest
/// sequence number an intact slot carries (all its stamp words agree, and the number belongs
/// to that slot). Then every slot that count says was written must hold exactly the last
/// message the sender put there. RDMA WRITEs leave the receiver no trace of the messages a
/// later one overwrote, so these are the messages checked: the last one of each slot.
struct BenchmarkPlacementReport: Equatable, Sendable {
    /// Little-endian words: placed, checked, mismatched, first slot, expected, found.
    static let size = 48
    /// No slot mismatched, or its words disagreed (no sequence number found).
    static let none = UInt64.max

    var placedMessages: UInt64
    var checkedSlots: UInt64
    var mismatchedSlots: UInt64
    var firstMismatchSlot: UInt64 = Self.none
    var firstMismatchExpected: UInt64 = Self.none
    var firstMismatchFound: UInt64 = Self.none

    /// Reads the window of `depth` slots of `stamp.messageSize` bytes.
    static func check(window: UnsafeRawPointer, depth: Int, stamp: BenchmarkMessageStamp, nonce: UInt64) -> Self {
        let size = stamp.messageSize
        var highest: UInt64?
        for slot in 0..<depth {
            if let sequence = stamp.agreedSequence(in: window + slot * size, nonce: nonce),
               sequence % UInt64(depth) == UInt64(slot) {
                highest = max(highest ?? 0, sequence)
            }
        }
        let placed = highest.map { $0 + 1 } ?? 0
        var report = Self(placedMessages: placed, checkedSlots: min(placed, UInt64(depth)), mismatchedSlots: 0)
        for slot in 0..<Int(report.checkedSlots) {
            // The last message of `placed` that went to this slot.
            let expected = UInt64(slot) + UInt64(depth) * ((placed - 1 - UInt64(slot)) / UInt64(depth))
            let found = stamp.agreedSequence(in: window + slot * size, nonce: nonce)
            guard found != expected else { continue }
            if report.mismatchedSlots == 0 {
                report.firstMismatchSlot = UInt64(slot)
                report.firstMismatchExpected = expected
                report.firstMismatchFound = found ?? Self.none
            }
            report.mismatchedSlots += 1
        }
        return report
    }

    func encode(into buffer: UnsafeMutableRawPointer) {
        for (index, word) in [placedMessages, checkedSlots, mismatchedSlots, firstMismatchSlot, firstMismatchExpected,
                              firstMismatchFound].enumerated() {
            buffer.storeBytes(of: word.littleEndian, toByteOffset: index * 8, as: UInt64.self)
        }
    }

    static func decode(_ buffer: UnsafeRawPointer) -> Self {
        func word(_ index: Int) -> UInt64 { UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)) }
        return Self(placedMessages: word(0), checkedSlots: word(1), mismatchedSlots: word(2),
                    firstMismatchSlot: word(3), firstMismatchExpected: word(4), firstMismatchFound: word(5))
    }

    /// Why this report does not show the `sent` messages of `stamp.messageSize` bytes all
    /// placed into `depth` slots, or nil when it does.
    func problem(sent: UInt64, depth: Int, stamp: BenchmarkMessageStamp) -> String? {
        let checkedAll = checkedSlots == min(sent, UInt64(depth))
        guard placedMessages != sent || mismatchedSlots != 0 || !checkedAll else { return nil }
        var text = "the receiver's window does not hold what was sent: it finds \(placedMessages) of the \(sent) "
            + "messages of \(stamp.messageSize) bytes placed (\(placedMessages * UInt64(stamp.messageSize)) of "
            + "\(sent * UInt64(stamp.messageSize)) bytes)"
        if mismatchedSlots > 0 {
            let found = firstMismatchFound == Self.none
                ? "words that agree on no message (not written, or written partly)"
                : "message \(firstMismatchFound)"
            text += "; \(mismatchedSlots) of the \(checkedSlots) slots it checked hold the wrong bytes, the first "
                + "slot \(firstMismatchSlot): expected message \(firstMismatchExpected), found \(found)"
        }
        return text + " (\(stamp.samples) words checked per message)"
    }
}
