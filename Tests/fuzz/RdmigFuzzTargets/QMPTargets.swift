import Foundation
import RdmigQEMU

/// What rdmig reads from QEMU's QMP socket: the byte stream split into lines, and each line's
/// JSON message as `QMPConnection` and the QEMU drivers read it.
enum QMPTargets {
    /// Byte 0 picks a piece size (1 to 256 bytes); the rest is what QEMU sent. The framer must
    /// give the same lines whole or in pieces: each "\n"-terminated line without its "\r".
    static func framer(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        guard let selector = input.first else { return }
        let stream = UnsafeRawBufferPointer(rebasing: input[1...])
        var expected: [[UInt8]] = []
        var lineStart = 0
        for (index, byte) in stream.enumerated() where byte == UInt8(ascii: "\n") {
            var line = Array(stream[lineStart..<index])
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            expected.append(line)
            lineStart = index + 1
        }
        for pieceSize in [max(1, stream.count), Int(selector) + 1] {
            var framer = QMPLineFramer(limit: 1 << 20)
            var lines: [[UInt8]] = []
            var start = 0
            while start < stream.count {
                let end = min(stream.count, start + pieceSize)
                framer.append(UnsafeRawBufferPointer(rebasing: stream[start..<end]))
                while let line = framer.nextLine() { lines.append(Array(line)) }
                start = end
            }
            guard lines == expected, framer.pendingCount == stream.count - lineStart else {
                throw FuzzPropertyViolation(
                    .qmpFramer, "in \(pieceSize)-byte pieces: \(lines.count) lines and \(framer.pendingCount) bytes pending, "
                        + "expected \(expected.count) lines and \(stream.count - lineStart) pending")
            }
        }
    }

    /// A stamp as rdmig's QEMU drivers compare event stamps with (the source's STOP).
    static let earlierStamp = QMPTimestamp(seconds: 1_764_165_000, microseconds: 123_456)

    /// One QMP message. Whatever it holds, reading it must not trap: as the greeting, as an
    /// event (its stamp turned into microseconds and downtimes, as the QEMU mode does), as a
    /// reply (`query-migrate`, `query-version`, an error). Its JSON, once printed and parsed
    /// again, must print the same from then on.
    static func message(_ input: UnsafeRawBufferPointer) throws(FuzzPropertyViolation) {
        let line = Data(input)
        guard let message = try? QMPValue(json: line) else { return }
        // One round may change a number's form: a double printed with an exponent that is a
        // whole number ("3.333333333333333e+17") parses back as an integer. From then on
        // printing and parsing must be stable.
        guard let settled = try? QMPValue(json: message.jsonData()) else {
            throw FuzzPropertyViolation(.qmpMessage, "rdmig's own JSON of a message does not parse: \(message.jsonString)")
        }
        let printed = settled.jsonData()
        guard let reparsed = try? QMPValue(json: printed) else {
            throw FuzzPropertyViolation(.qmpMessage, "rdmig's own JSON of a message does not parse: \(String(decoding: printed, as: UTF8.self))")
        }
        guard reparsed.jsonData() == printed else {
            throw FuzzPropertyViolation(.qmpMessage, "JSON printed, parsed and printed again changes: \(String(decoding: printed, as: UTF8.self))")
        }
        if let greeting = QMPGreeting(message: message) {
            _ = greeting.version.description
            _ = greeting.version < QEMUVersion(major: 9, minor: 0, micro: 0)
        }
        if let event = QMPEvent(message: message) {
            _ = event.description
            _ = event.migrationStatus
            if let stamp = event.timestamp {
                _ = stamp.description
                _ = stamp.microsecondsSinceEpoch
                _ = stamp < earlierStamp
                let downtime = QEMUMigrationDowntime(sourceStop: earlierStamp, destinationResume: stamp, qemuDowntimeMilliseconds: nil)
                _ = downtime.description
            }
        }
        if let reply = message["return"] {
            _ = QEMUMigrationInfo(reply).summary
            _ = QEMUVersion(reply)?.description
        }
        if let error = message["error"] {
            _ = error["class"]?.stringValue
            _ = error["desc"]?.stringValue ?? error.jsonString
        }
        _ = message["id"]?.int64Value
    }
}
