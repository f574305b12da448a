#if canImport(Glibc)
import Glibc
#endif

/// Faults a range of memory in ahead of use (`madvise(MADV_POPULATE_WRITE)`, Linux 5.14, or
/// `MADV_POPULATE_READ`), on several threads at once when it is large.
///
/// Faulting is most of what pinning a guest's memory costs (each page is allocated, zeroed
/// and mapped: ~0.3-0.6 s per GiB on these machines), and faults on separate ranges of one
/// mapping run in parallel (they take the mmap lock for reading only): with two threads 1 GiB
/// took 0.16 s instead of 0.38-0.59 s here. An `mlock` of the populated range afterwards only
/// walks the page tables (~0.09 s per GiB).
public enum PageFaulting {
    /// Below this, a slice is not worth a thread.
    public static let minimumSliceBytes = 64 << 20

    /// Faults `length` bytes at `address` in, on up to `threads` threads (slices aligned to
    /// `alignment`, a multiple of the page size the range is mapped with), pinned to `cpus`
    /// when given: pages come from the node of the CPU that faults them, so that is where
    /// the memory lands. Returns false when the kernel refuses with EINVAL (no
    /// MADV_POPULATE_WRITE before Linux 5.14, or a mapping it cannot write-fault, such as a
    /// read-only one): the caller's `mlock` faults the range then. Throws the first other
    /// failure (ENOMEM: no memory, EFAULT/EHWPOISON).
    /// `forWriting: false` read-faults instead (MADV_POPULATE_READ), which does not dirty the
    /// pages of a shared file mapping, as `mlock` would not have: write-faulting a guest-sized
    /// file on disk would have it all written back.
    @discardableResult
    public static func populate(
        _ address: UnsafeMutableRawPointer, length: Int, threads: Int = 1, cpus: [Int32] = [], alignment: Int = 2 << 20,
        forWriting: Bool = true
    ) throws(SystemCallError) -> Bool {
        let advice = forWriting ? MADV_POPULATE_WRITE : MADV_POPULATE_READ
        let sliceCount = max(1, min(threads, length / minimumSliceBytes))
        guard sliceCount > 1 else { return try populateSlice(UInt(bitPattern: address), length, advice) }
        var sliceLength = (length + sliceCount - 1) / sliceCount
        sliceLength = (sliceLength + alignment - 1) / alignment * alignment
        let base = UInt(bitPattern: address)
        let results = UnsafeMutableBufferPointer<Int32>.allocate(capacity: sliceCount)
        results.initialize(repeating: 0)
        defer { results.deallocate() }
        let resultsBase = UInt(bitPattern: results.baseAddress!)
        var workers: [SystemThread] = []
        // A thread that cannot be started leaves its slice to this one.
        var leftOver: [Int] = []
        for slice in 0..<sliceCount where slice * sliceLength < length {
            let start = slice * sliceLength
            let count = min(sliceLength, length - start)
            do {
                workers.append(try SystemThread(name: "rdmig-prefault", cpus: cpus) {
                    let code = PageFaulting.errnoOfPopulating(base + UInt(start), count, advice)
                    UnsafeMutablePointer<Int32>(bitPattern: resultsBase)!.advanced(by: slice).pointee = code
                })
            } catch {
                leftOver.append(slice)
            }
        }
        for slice in leftOver {
            let start = slice * sliceLength
            results[slice] = errnoOfPopulating(base + UInt(start), min(sliceLength, length - start), advice)
        }
        for worker in workers { worker.join() }
        if results.contains(EINVAL) { return false }
        if let failed = results.firstIndex(where: { $0 != 0 }) {
            throw SystemCallError(call: forWriting ? "madvise(MADV_POPULATE_WRITE)" : "madvise(MADV_POPULATE_READ)", errno: results[failed],
                                  context: "pre-faulting slice \(failed) of \(sliceCount) of \(length) bytes")
        }
        return true
    }

    private static func populateSlice(_ address: UInt, _ length: Int, _ advice: Int32) throws(SystemCallError) -> Bool {
        let code = errnoOfPopulating(address, length, advice)
        if code == EINVAL { return false }
        guard code == 0 else {
            throw SystemCallError(call: advice == MADV_POPULATE_WRITE ? "madvise(MADV_POPULATE_WRITE)" : "madvise(MADV_POPULATE_READ)",
                                  errno: code, context: "pre-faulting \(length) bytes")
        }
        return true
    }

    /// 0 on success, else the errno (EINTR is retried: the kernel resumes where it stopped).
    private static func errnoOfPopulating(_ address: UInt, _ length: Int, _ advice: Int32) -> Int32 {
        while true {
            if madvise(UnsafeMutableRawPointer(bitPattern: address), length, advice) == 0 { return 0 }
            let error = SystemCall.currentErrno()
            if error != EINTR { return error }
        }
    }
}
