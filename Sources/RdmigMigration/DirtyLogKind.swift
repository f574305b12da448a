/// Which dirty log the source uses for its guest memory.
public enum DirtyLogKind: String, CaseIterable, Sendable, Codable {
    /// The synthetic guest's own tracker: writers mark pages as they write them.
    case synthetic
    /// userfaultfd write protection (UFFDIO_REGISTER_MODE_WP): the kernel reports the first
    /// write to each page per pass; works for any memory of this process, with no help from
    /// the writer.
    case userfaultfd
}
