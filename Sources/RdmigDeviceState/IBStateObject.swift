/// One object of an ib-sw VF table: fixed-size little-endian encoding, decoding that
/// refuses values no device would hold, and a name for messages.
protocol IBStateObject: Equatable, Sendable {
    static var kind: IBObjectKind { get }
    static var bodySize: Int { get }
    /// The all-zero object a freshly reset table holds before the stream fills it.
    static var empty: Self { get }
    func encode(into writer: inout ByteWriter)
    init(decoding reader: inout ByteReader) throws(IBFieldError)
    /// How messages name this object, e.g. "qp 0x1a2".
    var label: String { get }
}

/// A decoded field holds a value its type does not allow.
struct IBFieldError: Error {
    let field: String
    let value: UInt64
}

extension IBStateObject {
    /// The first field that differs, as "field mine != theirs", via reflection: only called
    /// for objects already known to differ, so its cost does not matter.
    func firstDifference(from other: Self) -> String? {
        guard self != other else { return nil }
        let mine = Mirror(reflecting: self).children
        let theirs = Mirror(reflecting: other).children
        for (a, b) in zip(mine, theirs) where String(describing: a.value) != String(describing: b.value) {
            return "\(a.label ?? "?") \(a.value) != \(b.value)"
        }
        return "differs"
    }
}

func decodeEnum<E: RawRepresentable>(_ type: E.Type, _ raw: UInt8, field: String) throws(IBFieldError) -> E
where E.RawValue == UInt8 {
    guard let value = E(rawValue: raw) else { throw IBFieldError(field: field, value: UInt64(raw)) }
    return value
}

func hex<T: BinaryInteger>(_ value: T) -> String { "0x" + String(value, radix: 16) }
