/// What backs a guest memory region.
public enum GuestMemoryBacking: Hashable, Sendable, CustomStringConvertible {
    /// Private anonymous memory (MAP_PRIVATE | MAP_ANONYMOUS): the synthetic guest's default.
    case anonymous
    /// A memfd (shmem), mapped MAP_SHARED: shareable with another process by its descriptor,
    /// and write-protectable by userfaultfd on Linux 5.19+.
    case memfd(name: String)
    /// A file mapped MAP_SHARED, for example a VMM's guest-RAM file
    /// (`-object memory-backend-file,mem-path=/dev/shm/vm0,share=on`). With `create` the
    /// file is created (and extended) when it is missing or too short.
    case file(path: String, offset: UInt64 = 0, create: Bool = false)

    public var description: String {
        switch self {
        case .anonymous: return "anonymous memory"
        case .memfd(let name): return "memfd '\(name)'"
        case .file(let path, let offset, _): return offset == 0 ? "file \(path)" : "file \(path) at offset \(offset)"
        }
    }

    /// Parses the configuration form: `anonymous`, `memfd`, `memfd:NAME`, `file:PATH`.
    public init(parsing text: String) throws(MigrationConfigurationError) {
        if text == "anonymous" {
            self = .anonymous
        } else if text == "memfd" {
            self = .memfd(name: "rdmig-guest")
        } else if text.hasPrefix("memfd:"), text.count > 6 {
            self = .memfd(name: String(text.dropFirst(6)))
        } else if text.hasPrefix("file:"), text.count > 5 {
            self = .file(path: String(text.dropFirst(5)), create: true)
        } else {
            throw .invalidValue(key: "memory-backing", value: text,
                                expected: "anonymous, memfd, memfd:NAME or file:PATH")
        }
    }
}
