import Foundation

/// A JSON value as QMP carries it (docs/interop/qmp-spec.rst in QEMU): command arguments,
/// replies and event data. Integers stay integers (byte counts exceed a Double's exact range
/// only beyond 2^53, but the distinction keeps `{"pass": 3}` printing as 3, not 3.0).
public enum QMPValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([QMPValue])
    case object([String: QMPValue])

    /// The member `key` of an object; nil for a missing member or a value that is no object.
    public subscript(key: String) -> QMPValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// An integer; a double with an exact integer value (QEMU prints some counters either way) too.
    public var int64Value: Int64? {
        switch self {
        case .int(let value): return value
        case .double(let value) where value.rounded() == value && abs(value) < 9.2e18: return Int64(value)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .int(let value): return Double(value)
        case .double(let value): return value
        default: return nil
        }
    }

    public var arrayValue: [QMPValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var objectValue: [String: QMPValue]? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// Compact JSON without a trailing newline, keys sorted (stable output for logs and tests).
    public func jsonData() -> Data {
        // Encoding a QMPValue cannot fail: every case maps to a JSON value.
        (try? QMPValue.encoder.encode(self)) ?? Data("null".utf8)
    }

    public var jsonString: String { String(decoding: jsonData(), as: UTF8.self) }

    /// Parses one JSON text.
    public init(json: Data) throws {
        self = try JSONDecoder().decode(QMPValue.self, from: json)
    }

    /// Decodes this value as `T` (a reply's `return` member into a typed struct).
    public func decode<T: Decodable>(as type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: jsonData())
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        // QEMU's parser accepts "\/", but unescaped paths are easier to read in logs.
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}

extension QMPValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .int(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([QMPValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: QMPValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

extension QMPValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral,
    ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: QMPValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, QMPValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}

extension QMPValue: CustomStringConvertible {
    public var description: String { jsonString }
}
