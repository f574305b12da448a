#if canImport(Glibc)
import Glibc
#endif

/// The page size backing a mapping: the base page, or one of the x86-64 huge page sizes.
public enum PageSize: UInt64, Codable, Sendable, CaseIterable, CustomStringConvertible, Comparable {
    case base4KiB = 4096
    case huge2MiB = 2_097_152
    case huge1GiB = 1_073_741_824

    public var bytes: UInt64 { rawValue }

    public var description: String {
        switch self {
        case .base4KiB: return "4 KiB"
        case .huge2MiB: return "2 MiB"
        case .huge1GiB: return "1 GiB"
        }
    }

    public var isHuge: Bool { self != .base4KiB }

    /// The directory name the kernel uses under .../hugepages/ for this size.
    var sysfsDirectory: String { "hugepages-\(rawValue / 1024)kB" }

    /// mmap flags: MAP_HUGETLB with log2(size) in bits 26..31 (MAP_HUGE_SHIFT), as
    /// include/uapi/asm-generic/hugetlb_encode.h defines MAP_HUGE_2MB / MAP_HUGE_1GB.
    var mmapFlags: Int32 {
        switch self {
        case .base4KiB: return 0
        case .huge2MiB: return Int32(MAP_HUGETLB) | (21 << 26)
        case .huge1GiB: return Int32(MAP_HUGETLB) | (30 << 26)
        }
    }

    public static func < (a: PageSize, b: PageSize) -> Bool { a.rawValue < b.rawValue }

    /// `length` rounded up to a whole number of these pages.
    public func roundUp(_ length: UInt64) -> UInt64 {
        (length + rawValue - 1) / rawValue * rawValue
    }
}
