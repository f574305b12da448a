/// Writes little-endian integers into a caller's buffer at a moving position. The caller
/// checks the space first (entries have fixed sizes); `storeBytes` still traps on overrun.
struct ByteWriter {
    let buffer: UnsafeMutableRawBufferPointer
    private(set) var position: Int

    init(_ buffer: UnsafeMutableRawBufferPointer, at position: Int = 0) {
        self.buffer = buffer
        self.position = position
    }

    var remaining: Int { buffer.count - position }

    mutating func u8(_ value: UInt8) {
        buffer.storeBytes(of: value, toByteOffset: position, as: UInt8.self)
        position += 1
    }

    mutating func u16(_ value: UInt16) {
        buffer.storeBytes(of: value.littleEndian, toByteOffset: position, as: UInt16.self)
        position += 2
    }

    mutating func u32(_ value: UInt32) {
        buffer.storeBytes(of: value.littleEndian, toByteOffset: position, as: UInt32.self)
        position += 4
    }

    mutating func u64(_ value: UInt64) {
        buffer.storeBytes(of: value.littleEndian, toByteOffset: position, as: UInt64.self)
        position += 8
    }

    mutating func zeros(_ count: Int) {
        for index in position..<(position + count) { buffer[index] = 0 }
        position += count
    }
}
