extension MigrationMessage {
    /// What became of the guest on a QEMU-mode destination.
    public enum QEMUGuestOutcome: UInt8, Sendable, CaseIterable {
        /// QEMU completed loading, the guest was resumed with `cont` (RESUME seen).
        case resumed = 1
        /// QEMU never completed loading: the guest never ran there and never will; the
        /// source may (and must) run it.
        case neverRan = 2
        /// QEMU completed loading but the guest was not resumed (a VF state or `cont`
        /// failure): both copies are stopped, an operator decides.
        case loadedNotResumed = 3
    }

    /// QEMU_OUTCOME: the destination's last word in QEMU mode. Stamps are QEMU's event times
    /// in microseconds since the epoch (0: not seen), so the source can measure the downtime
    /// from its STOP event to this RESUME event.
    public struct QEMUOutcome: Hashable, Sendable, WireCodable {
        public var guest: QEMUGuestOutcome
        public var completedMicroseconds: UInt64
        public var resumeMicroseconds: UInt64
        /// The destination relay's figures (bytes written into QEMU, time from first to last).
        public var relayBytes: UInt64
        public var relayMicroseconds: UInt64
        /// Why, when the guest does not run there.
        public var detail: String

        public init(guest: QEMUGuestOutcome, completedMicroseconds: UInt64, resumeMicroseconds: UInt64,
                    relayBytes: UInt64, relayMicroseconds: UInt64, detail: String) {
            self.guest = guest
            self.completedMicroseconds = completedMicroseconds
            self.resumeMicroseconds = resumeMicroseconds
            self.relayBytes = relayBytes
            self.relayMicroseconds = relayMicroseconds
            self.detail = detail
        }

        public static let minimumEncodedSize = 1 + 8 * 4 + 4

        public func encode(to writer: inout WireWriter) throws(WireError) {
            try writer.write(guest.rawValue, "guest")
            try writer.write(completedMicroseconds, "completedMicroseconds")
            try writer.write(resumeMicroseconds, "resumeMicroseconds")
            try writer.write(relayBytes, "relayBytes")
            try writer.write(relayMicroseconds, "relayMicroseconds")
            try writer.write(detail, "detail")
        }

        public init(from reader: inout WireReader) throws(WireError) {
            let code = try reader.readUInt8("guest")
            guard let guest = QEMUGuestOutcome(rawValue: code) else {
                throw .invalidValue(message: reader.messageName, field: "guest", detail: "unknown guest outcome \(code)")
            }
            self.guest = guest
            completedMicroseconds = try reader.readUInt64("completedMicroseconds")
            resumeMicroseconds = try reader.readUInt64("resumeMicroseconds")
            relayBytes = try reader.readUInt64("relayBytes")
            relayMicroseconds = try reader.readUInt64("relayMicroseconds")
            // The source turns these into signed durations and timestamps (Int64).
            for (field, value) in [("completedMicroseconds", completedMicroseconds), ("resumeMicroseconds", resumeMicroseconds),
                                   ("relayMicroseconds", relayMicroseconds)] where value > UInt64(Int64.max) {
                throw .invalidValue(message: reader.messageName, field: field, detail: "\(value) µs is beyond 2^63 - 1")
            }
            detail = try reader.readString("detail", limit: 4096)
        }
    }
}
