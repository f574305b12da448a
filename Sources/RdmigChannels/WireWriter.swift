/// Writes little-endian integers, byte strings and text into a caller's buffer (for a
/// control frame: straight into the registered send slot, without allocating).
///
/// A writer without a buffer only counts, so a message's size can be known before encoding
/// (`WireWriter.encodedSize(of:)`).
public struct WireWriter {
    private let buffer: UnsafeMutableRawBufferPointer?
    /// Bytes written (or counted) so far.
    public private(set) var count: Int = 0
    /// The message being encoded, for errors.
    public var messageName: String

    public init(into buffer: UnsafeMutableRawBufferPointer, messageName: String) {
        self.buffer = buffer
        self.messageName = messageName
    }

    /// A writer that only counts bytes.
    public init(countingFor messageName: String) {
        self.buffer = nil
        self.messageName = messageName
    }

    @inline(__always)
    private mutating func reserve(_ size: Int, _ field: String) throws(WireError) -> UnsafeMutableRawPointer? {
        guard let buffer else {
            count += size
            return nil
        }
        guard size <= buffer.count - count else {
            throw .overflow(message: messageName, field: field, needed: count + size, capacity: buffer.count)
        }
        let pointer = buffer.baseAddress! + count
        count += size
        return pointer
    }

    @inline(__always)
    private mutating func writeInteger<T: FixedWidthInteger>(_ value: T, _ field: String) throws(WireError) {
        if let pointer = try reserve(MemoryLayout<T>.size, field) {
            pointer.storeBytes(of: value.littleEndian, as: T.self)
        }
    }

    public mutating func write(_ value: UInt8, _ field: String) throws(WireError) { try writeInteger(value, field) }
    public mutating func write(_ value: UInt16, _ field: String) throws(WireError) { try writeInteger(value, field) }
    public mutating func write(_ value: UInt32, _ field: String) throws(WireError) { try writeInteger(value, field) }
    public mutating func write(_ value: UInt64, _ field: String) throws(WireError) { try writeInteger(value, field) }

    public mutating func write(_ value: Bool, _ field: String) throws(WireError) {
        try writeInteger(UInt8(value ? 1 : 0), field)
    }

    /// A u32 element count, for arrays whose elements follow.
    public mutating func writeCount(_ value: Int, _ field: String) throws(WireError) {
        guard value >= 0, value <= Int(UInt32.max) else {
            throw .invalidValue(message: messageName, field: field, detail: "count \(value) does not fit in 32 bits")
        }
        try writeInteger(UInt32(value), field)
    }

    /// A u32 length followed by the bytes.
    public mutating func write(bytes: UnsafeRawBufferPointer, _ field: String) throws(WireError) {
        try writeCount(bytes.count, field)
        if let pointer = try reserve(bytes.count, field), bytes.count > 0 {
            pointer.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
    }

    public mutating func write(bytes: [UInt8], _ field: String) throws(WireError) {
        // withUnsafeBytes rethrows untyped errors; carry the typed one out in a Result.
        let result: Result<Void, WireError> = bytes.withUnsafeBytes { raw in
            do throws(WireError) { try write(bytes: raw, field); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    /// A u32 byte length followed by UTF-8.
    public mutating func write(_ text: String, _ field: String) throws(WireError) {
        var text = text
        let result: Result<Void, WireError> = text.withUTF8 { utf8 in
            do throws(WireError) { try write(bytes: UnsafeRawBufferPointer(utf8), field); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    public mutating func write<T: WireEncodable>(_ value: T) throws(WireError) {
        try value.encode(to: &self)
    }

    /// A u32 count followed by the elements.
    public mutating func write<T: WireEncodable>(_ values: [T], _ field: String) throws(WireError) {
        try writeCount(values.count, field)
        for value in values { try value.encode(to: &self) }
    }

    /// The payload size of `message`, without encoding it anywhere.
    public static func encodedSize<M: ControlMessage>(of message: M) throws(WireError) -> Int {
        var counter = WireWriter(countingFor: message.wireName)
        try message.encodePayload(to: &counter)
        return counter.count
    }
}
