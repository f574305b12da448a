import ArgumentParser
import Foundation
import RdmigMigration
import RdmigSystem
import RdmigTransport

/// An error a command reports to the person who ran it; `rdmig` prints it and exits non-zero.
struct RdmigCommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension ByteCount: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? ByteCount(parsing: argument) else { return nil }
        self = value
    }

    public static var defaultCompletionKind: CompletionKind { .default }
}

extension ByteRate: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? ByteRate(parsing: argument) else { return nil }
        self = value
    }
}

extension TransportBackendKind: ExpressibleByArgument {}
extension EncryptionPolicy: ExpressibleByArgument {}

extension TransportOptions.CompletionMode: ExpressibleByArgument {}

extension TransportEndpoint: ExpressibleByArgument {
    public init?(argument: String) {
        guard let value = try? TransportEndpoint(parsing: argument) else { return nil }
        self = value
    }
}

/// JSON for reports: sorted keys so outputs diff cleanly, pretty when a person reads it.
enum JSONText {
    static func encode<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// Prints a line that a parent process or a log collector reads live: `rdmig` makes stdout
/// line-buffered at start (`rdmig_line_buffer_stdout`), so a newline flushes it.
func printFlushed(_ line: String) {
    print(line)
}
