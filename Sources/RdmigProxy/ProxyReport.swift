import Foundation
import RdmigSystem

/// What became of one relayed connection (one transport connection).
public struct ProxyConnectionReport: Codable, Sendable {
    public enum Status: String, Codable, Sendable {
        /// Both directions ended with an end of file (each relayed as one).
        case completed
        /// Torn down: a local connection reset, the transport lost, the peer's abort, a signal.
        case failed
        /// Never relayed: the destination could not connect its unix socket, or the
        /// transport connection or authentication failed.
        case refused
    }

    public var role: String
    /// 1, 2, ... in the order this side accepted them.
    public var connection: Int
    public var peer: String
    public var status: Status
    /// Bytes from the source host's unix connection to the destination's, and back.
    public var bytesToDestination: UInt64
    public var bytesToSource: UInt64
    public var durationMilliseconds: Double
    /// CPU time of the connection's two relay threads on this side.
    public var relayCPUMilliseconds: Double = 0
    public var error: String?

    /// Takes what the relay of this connection did; the source side sends towards the
    /// destination, the destination side towards the source.
    mutating func record(_ outcome: ProxyConnectionRelay.Outcome, onSourceSide: Bool) {
        bytesToDestination = onSourceSide ? outcome.bytesOut : outcome.bytesIn
        bytesToSource = onSourceSide ? outcome.bytesIn : outcome.bytesOut
        status = outcome.failure == nil ? .completed : .failed
        error = outcome.failure
        relayCPUMilliseconds = outcome.relayCPU.milliseconds
    }

    var text: String {
        var line = "connection \(connection) (\(peer)): \(status.rawValue), \(ByteCount(bytesToDestination).humanReadable) to the destination, "
            + "\(ByteCount(bytesToSource).humanReadable) to the source in \(formatFixed(durationMilliseconds, decimals: 1)) ms, relay CPU \(formatFixed(relayCPUMilliseconds, decimals: 1)) ms"
        if let error { line += ": \(error)" }
        return line
    }
}

/// The whole run of one `rdmig proxy` side: every connection it relayed, added up.
public struct ProxyReport: Codable, Sendable {
    public var role: String
    public var connections = 0
    public var completed = 0
    public var failed = 0
    public var refused = 0
    public var bytesToDestination: UInt64 = 0
    public var bytesToSource: UInt64 = 0
    public var durationMilliseconds: Double = 0
    /// This process's CPU time over the run (relay and transport threads), as QEMU mode
    /// reports its relay's.
    public var cpuMilliseconds: Double = 0
    /// The relay threads' share of it, added up over the connections.
    public var relayCPUMilliseconds: Double = 0

    public init(role: String) {
        self.role = role
    }

    mutating func add(_ connection: ProxyConnectionReport) {
        connections += 1
        switch connection.status {
        case .completed: completed += 1
        case .failed: failed += 1
        case .refused: refused += 1
        }
        bytesToDestination += connection.bytesToDestination
        bytesToSource += connection.bytesToSource
        relayCPUMilliseconds += connection.relayCPUMilliseconds
    }

    public var text: String {
        "\(connections) connection(s): \(completed) completed, \(failed) failed, \(refused) refused; "
            + "\(ByteCount(bytesToDestination).humanReadable) to the destination, \(ByteCount(bytesToSource).humanReadable) to the source "
            + "in \(formatFixed(durationMilliseconds / 1000, decimals: 1)) s, CPU \(formatFixed(cpuMilliseconds, decimals: 0)) ms (relay threads \(formatFixed(relayCPUMilliseconds, decimals: 0)) ms)"
    }
}

/// The reports as pretty-printed JSON objects with kebab-case keys, like the other modes'.
public enum ProxyJSON {
    public static func encode<Report: Encodable>(_ report: Report) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .custom { path in KebabKey(path.last!.stringValue) }
        return String(decoding: try encoder.encode(report), as: UTF8.self)
    }

    public static func text(_ report: ProxyConnectionReport) -> String { report.text }

    private struct KebabKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
        /// An acronym stays one word: relayCPUMilliseconds → relay-cpu-milliseconds.
        init(_ camelCase: String) {
            let characters = Array(camelCase)
            var text = ""
            for (index, character) in characters.enumerated() {
                if character.isUppercase, index > 0 {
                    let previous = characters[index - 1]
                    let next = index + 1 < characters.count ? characters[index + 1] : nil
                    if previous.isLowercase || (previous.isUppercase && next?.isLowercase == true) { text += "-" }
                }
                text += character.lowercased()
            }
            stringValue = text
        }
    }
}
