#if canImport(Glibc)
import Glibc
#endif
import CRdmigShims

/// The pipe calls rdmig's QEMU relay uses, behind errno-carrying errors. Allocation-free:
/// they run per slot on the relay thread.
public enum PipeCalls {
    /// What a non-blocking vmsplice(2) did.
    public enum SpliceResult: Equatable, Sendable {
        /// This many bytes now sit in the pipe by reference.
        case handedOver(Int)
        /// The pipe is full (EAGAIN).
        case full
    }

    /// Hands `length` bytes at `base` to the pipe `fd` by reference (vmsplice(2) without
    /// SPLICE_F_GIFT): no copy; the pipe holds the pages until its reader has copied them
    /// out, so they must not change (nor be freed for reuse) before that.
    @inline(__always)
    public static func vmsplice(_ fd: Int32, _ base: UnsafeRawPointer, _ length: Int) throws(SystemCallError) -> SpliceResult {
        while true {
            let result = rdmig_vmsplice_nonblocking(fd, base, length)
            if result >= 0 { return .handedOver(result) }
            let error = Int32(-result)
            if error == EINTR { continue }
            if error == EAGAIN { return .full }
            throw SystemCallError(call: "vmsplice", errno: error, context: "handing \(length) bytes to pipe fd \(fd)")
        }
    }

    /// Bytes in the pipe `fd` that its reader has not taken yet (FIONREAD).
    @inline(__always)
    public static func unread(_ fd: Int32) throws(SystemCallError) -> Int {
        let result = rdmig_pipe_unread(fd)
        guard result >= 0 else { throw SystemCallError(call: "ioctl(FIONREAD)", errno: -result, context: "pipe fd \(fd)") }
        return Int(result)
    }

    /// A new pipe, both ends close-on-exec (created so, not set afterwards: no child spawned
    /// by another thread meanwhile inherits an end). With `nonBlockingWriteEnd`, writes and
    /// vmsplice into it return EAGAIN instead of blocking on a full pipe (the reader's end is
    /// left blocking: it goes to another program). Returns (read end, write end).
    public static func makePipe(nonBlockingWriteEnd: Bool = false) throws(SystemCallError) -> (read: Int32, write: Int32) {
        var ends: (Int32, Int32) = (-1, -1)
        let result = withUnsafeMutableBytes(of: &ends) { rdmig_pipe_cloexec($0.baseAddress!.assumingMemoryBound(to: Int32.self)) }
        guard result == 0 else { throw SystemCallError(call: "pipe2", errno: -result) }
        guard nonBlockingWriteEnd else { return ends }
        let flags = fcntl(ends.1, F_GETFL)
        if flags < 0 || fcntl(ends.1, F_SETFL, flags | O_NONBLOCK) < 0 {
            let error = SystemCallError(call: "fcntl(F_SETFL, O_NONBLOCK)", errno: errno, context: "pipe write end \(ends.1)")
            close(ends.0)
            close(ends.1)
            throw error
        }
        return ends
    }

    /// Resizes the pipe `fd` (F_SETPIPE_SZ); returns the size the kernel chose (a power of
    /// two pages, at least `bytes`).
    public static func setSize(_ fd: Int32, _ bytes: Int) throws(SystemCallError) -> Int {
        let result = rdmig_set_pipe_size(fd, Int32(clamping: bytes))
        guard result >= 0 else { throw SystemCallError(call: "fcntl(F_SETPIPE_SZ)", errno: -result, context: "pipe fd \(fd), \(bytes) bytes") }
        return Int(result)
    }
}
