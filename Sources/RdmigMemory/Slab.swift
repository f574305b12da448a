/// One fixed-size piece of a `BufferPool`, handed out by `acquire()` and given back with
/// `release(_:)`. A value: copying it does not copy the memory, and it must not be used
/// after it was released or after the pool is gone.
public struct Slab: @unchecked Sendable, Hashable {
    // @unchecked: the pointer is into the pool's pinned memory, whose lifetime and sharing
    // rules the pool documents; the struct itself is immutable.
    public let index: Int32
    /// Byte offset from the start of the pool: with the pool registered once,
    /// `registration.slice(offset: slab.offset, length: n)` names this slab in a work request.
    public let offset: Int
    public let base: UnsafeMutableRawPointer
    public let length: Int

    @inline(__always)
    init(index: Int32, offset: Int, base: UnsafeMutableRawPointer, length: Int) {
        self.index = index
        self.offset = offset
        self.base = base
        self.length = length
    }

    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: length)
    }
}
