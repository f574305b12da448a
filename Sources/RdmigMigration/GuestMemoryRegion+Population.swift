#if canImport(Glibc)
import Glibc
#endif

extension GuestMemoryRegion {
    /// The pages of private anonymous memory that were never populated: neither mapped nor
    /// swapped out (bits 63 and 62 of /proc/self/pagemap, Documentation/admin-guide/mm/
    /// pagemap.rst; readable without privileges since Linux 4.2, which only hides the PFNs).
    /// Such a page reads as zeros, so a migration pass can send it as a zero-page marker
    /// without reading it. Reading it would fault it in (mapping the shared zero page) and,
    /// when the guest later writes it, cost a TLB shootdown across CPUs — the synthetic
    /// guest's writers' largest kernel cost in a profile of a 4 GiB guest's first pass.
    ///
    /// Nil where this does not hold or cannot be known: shared (memfd, file) or huge-page
    /// memory, guest pages that are not host pages, or an unreadable pagemap. A page the
    /// guest writes right after this looked is dirty in the dirty log, so the next pass
    /// sends it with its content.
    public func unpopulatedPages() -> DirtyBitmap? {
        guard case .anonymous = backing, !usesHugePages, pageSize == GuestMemoryRegion.hostPageSize else { return nil }
        let fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let batch = 64 * 1024
        let entries = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: batch)
        defer { entries.deallocate() }
        let firstEntry = Int(UInt(bitPattern: baseAddress)) / pageSize
        var bitmap = DirtyBitmap(pageCount: pageCount)
        var page = 0
        while page < pageCount {
            let count = min(batch, pageCount - page)
            let bytes = pread(fd, entries.baseAddress!, count * 8, off_t((firstEntry + page) * 8))
            guard bytes == count * 8 else { return nil }
            for index in 0..<count where entries[index] >> 62 == 0 { bitmap.insert(page + index) }
            page += count
        }
        return bitmap
    }
}
