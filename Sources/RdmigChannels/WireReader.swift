/// Reads what `WireWriter` wrote, checking every field against the bytes left, so that a
/// truncated or malformed message is an error naming the message and the field, never a
/// crash or an out-of-bounds read.
public struct WireReader {
    private let bytes: UnsafeRawBufferPointer
    /// Bytes consumed so far.
    public private(set) var offset: Int = 0
    /// The message being decoded, for errors.
    public var messageName: String

    public init(_ bytes: UnsafeRawBufferPointer, messageName: String) {
        self.bytes = bytes
        self.messageName = messageName
    }

    public var remaining: Int { bytes.count - offset }

    @inline(__always)
    private mutating func take(_ size: Int, _ field: String) throws(WireError) -> UnsafeRawPointer {
        guard size <= remaining else {
            throw .truncated(message: messageName, field: field, needed: size, available: remaining)
        }
        let pointer = bytes.baseAddress! + offset
        offset += size
        return pointer
    }

    @inline(__always)
    private mutating func readInteger<T: FixedWidthInteger>(_ field: String, as: T.Type) throws(WireError) -> T {
        T(littleEndian: try take(MemoryLayout<T>.size, field).loadUnaligned(as: T.self))
    }

    public mutating func readUInt8(_ field: String) throws(WireError) -> UInt8 { try readInteger(field, as: UInt8.self) }
    public mutating func readUInt16(_ field: String) throws(WireError) -> UInt16 { try readInteger(field, as: UInt16.self) }
    public mutating func readUInt32(_ field: String) throws(WireError) -> UInt32 { try readInteger(field, as: UInt32.self) }
    public mutating func readUInt64(_ field: String) throws(WireError) -> UInt64 { try readInteger(field, as: UInt64.self) }

    public mutating func readBool(_ field: String) throws(WireError) -> Bool {
        switch try readUInt8(field) {
        case 0: return false
        case 1: return true
        case let other: throw .invalidValue(message: messageName, field: field, detail: "\(other) is not a boolean (0 or 1)")
        }
    }

    /// A u32 count of elements of at least `minimumElementSize` bytes each; refused when the
    /// rest of the payload cannot hold that many, so a hostile count never drives an
    /// allocation.
    public mutating func readCount(_ field: String, minimumElementSize: Int) throws(WireError) -> Int {
        let count = Int(try readUInt32(field))
        if count > 0, count > remaining / max(1, minimumElementSize) {
            throw .truncated(message: messageName, field: field, needed: count * max(1, minimumElementSize), available: remaining)
        }
        return count
    }

    /// A u32 length followed by that many bytes, of at most `limit` bytes.
    public mutating func readBytes(_ field: String, limit: Int = Int(UInt32.max)) throws(WireError) -> [UInt8] {
        let length = try readCount(field, minimumElementSize: 1)
        guard length <= limit else {
            throw .invalidValue(message: messageName, field: field, detail: "\(length) bytes exceed the limit of \(limit)")
        }
        let pointer = try take(length, field)
        return Array(UnsafeRawBufferPointer(start: pointer, count: length))
    }

    /// A u32 length followed by UTF-8 text.
    public mutating func readString(_ field: String, limit: Int = 64 * 1024) throws(WireError) -> String {
        let length = try readCount(field, minimumElementSize: 1)
        guard length <= limit else {
            throw .invalidValue(message: messageName, field: field, detail: "text of \(length) bytes exceeds the limit of \(limit)")
        }
        let pointer = try take(length, field)
        let utf8 = UnsafeBufferPointer(start: pointer.assumingMemoryBound(to: UInt8.self), count: length)
        guard let text = String(validating: utf8, as: UTF8.self) else {
            throw .invalidValue(message: messageName, field: field, detail: "text is not valid UTF-8")
        }
        return text
    }

    public mutating func read<T: WireDecodable>(_ type: T.Type) throws(WireError) -> T {
        try T(from: &self)
    }

    /// A u32 count followed by the elements.
    public mutating func readArray<T: WireDecodable>(of type: T.Type, _ field: String) throws(WireError) -> [T] {
        let count = try readCount(field, minimumElementSize: T.minimumEncodedSize)
        var values: [T] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try T(from: &self)) }
        return values
    }

    /// Checks that the payload held nothing after the last field.
    public func finish() throws(WireError) {
        if remaining != 0 { throw .trailingBytes(message: messageName, count: remaining) }
    }
}
