#if canImport(Glibc)
import Glibc
#endif

/// Page-aligned memory for a conformance case, filled with position-dependent patterns so a
/// byte that lands in the wrong place is noticed. Freed in deinit; `ConformancePeers` keeps it
/// alive until both connections are closed, so no backend writes into freed memory.
final class ConformanceMemory: @unchecked Sendable {
    let bytes: UnsafeMutableRawBufferPointer

    init(count: Int, fill: UInt8 = 0) {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 4096)
        memset(pointer, Int32(fill), max(count, 1))
        bytes = UnsafeMutableRawBufferPointer(start: pointer, count: count)
    }

    deinit { bytes.baseAddress?.deallocate() }

    var count: Int { bytes.count }
    var address: UInt64 { UInt64(UInt(bitPattern: bytes.baseAddress)) }

    /// The sub-buffer `[offset, offset+length)`, e.g. to register a window with guard bytes around it.
    func slice(_ offset: Int, _ length: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
    }

    /// Fills `[offset, offset+length)` with 8-byte words that depend on `seed` and the word's position.
    func fillPattern(seed: UInt64, offset: Int = 0, length: Int? = nil) {
        let length = length ?? (count - offset)
        let base = bytes.baseAddress! + offset
        let words = length / 8
        var value = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for index in 0..<words {
            value = value &* 6364136223846793005 &+ UInt64(index) &+ 1442695040888963407
            base.storeBytes(of: value, toByteOffset: index * 8, as: UInt64.self)
        }
        for index in (words * 8)..<length {
            base.storeBytes(of: UInt8(truncatingIfNeeded: seed &+ UInt64(index)), toByteOffset: index, as: UInt8.self)
        }
    }

    /// Sets `[offset, offset+length)` to `value`.
    func fill(_ value: UInt8, offset: Int = 0, length: Int? = nil) {
        memset(bytes.baseAddress! + offset, Int32(value), length ?? (count - offset))
    }

    /// Throws unless `[offset, offset+length)` equals `other`'s bytes at `otherOffset`.
    func expectEqual(_ offset: Int, _ other: ConformanceMemory, _ otherOffset: Int, length: Int, _ what: String,
                     file: String = #fileID, line: Int = #line) throws {
        let mine = bytes.baseAddress! + offset
        let theirs = other.bytes.baseAddress! + otherOffset
        guard memcmp(mine, theirs, length) != 0 else { return }
        var first = 0
        while first < length && mine.load(fromByteOffset: first, as: UInt8.self) == theirs.load(fromByteOffset: first, as: UInt8.self) {
            first += 1
        }
        throw ConformanceFailure("\(what): byte \(first) of \(length) differs (got 0x\(String(mine.load(fromByteOffset: first, as: UInt8.self), radix: 16)), "
            + "expected 0x\(String(theirs.load(fromByteOffset: first, as: UInt8.self), radix: 16)))", file: file, line: line)
    }

    /// Throws unless every byte of `[offset, offset+length)` is `value`.
    func expectAll(_ value: UInt8, offset: Int, length: Int, _ what: String, file: String = #fileID, line: Int = #line) throws {
        let base = bytes.baseAddress! + offset
        for index in 0..<length where base.load(fromByteOffset: index, as: UInt8.self) != value {
            throw ConformanceFailure("\(what): byte \(index) of \(length) is 0x\(String(base.load(fromByteOffset: index, as: UInt8.self), radix: 16)), "
                + "expected 0x\(String(value, radix: 16)) (untouched)", file: file, line: line)
        }
    }
}
