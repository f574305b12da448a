#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A failed system or library call: which call, the errno it left, and what it was doing.
///
/// errno is captured by `SystemCall.check` immediately after the call returns, before any
/// other code can overwrite it (the swift-system / swift-nio rule).
public struct SystemCallError: Error, CustomStringConvertible, Equatable, Sendable {
    public let call: String
    public let errno: Int32
    public let context: String?

    public init(call: String, errno: Int32, context: String? = nil) {
        self.call = call
        self.errno = errno
        self.context = context
    }

    /// The C library's text for the errno, e.g. "Connection refused".
    public var reason: String { String(cString: strerror(errno)) }

    /// The symbolic name (ECONNREFUSED, ENODEV, ...) for the errnos rdmig reports most.
    public var errnoName: String { SystemCallError.name(of: errno) }

    public var description: String {
        let base = "\(call) failed: \(reason) (\(errnoName))"
        if let context { return "\(base): \(context)" }
        return base
    }

    public static func name(of errno: Int32) -> String {
        switch errno {
        case EPERM: return "EPERM"
        case ENOENT: return "ENOENT"
        case EINTR: return "EINTR"
        case EIO: return "EIO"
        case EBADF: return "EBADF"
        case EAGAIN: return "EAGAIN"
        case ENOMEM: return "ENOMEM"
        case EACCES: return "EACCES"
        case EFAULT: return "EFAULT"
        case EBUSY: return "EBUSY"
        case EEXIST: return "EEXIST"
        case ENODEV: return "ENODEV"
        case EINVAL: return "EINVAL"
        case ENOSPC: return "ENOSPC"
        case EPIPE: return "EPIPE"
        case ENOSYS: return "ENOSYS"
        case ENOTSUP: return "ENOTSUP"
        case ENOMSG: return "ENOMSG"
        case EADDRINUSE: return "EADDRINUSE"
        case EADDRNOTAVAIL: return "EADDRNOTAVAIL"
        case ENETUNREACH: return "ENETUNREACH"
        case ECONNRESET: return "ECONNRESET"
        case ECONNREFUSED: return "ECONNREFUSED"
        case ECONNABORTED: return "ECONNABORTED"
        case ETIMEDOUT: return "ETIMEDOUT"
        case EHOSTUNREACH: return "EHOSTUNREACH"
        case ENOTCONN: return "ENOTCONN"
        default: return "errno \(errno)"
        }
    }
}

/// Turns the C convention "-1 and errno" into thrown errors, in one place.
public enum SystemCall {
    /// Runs `body`, retrying on EINTR, and throws with the call's name when it returns -1.
    @inlinable
    @discardableResult
    public static func check<Result: BinaryInteger>(
        _ call: String, context: @autoclosure () -> String? = nil, _ body: () -> Result
    ) throws(SystemCallError) -> Result {
        while true {
            let result = body()
            if result != -1 { return result }
            let error = currentErrno()
            if error == EINTR { continue }
            throw SystemCallError(call: call, errno: error, context: context())
        }
    }

    /// For calls that return an errno value instead of setting errno (pthread_*, posix_*).
    @inlinable
    public static func checkReturned(
        _ call: String, context: @autoclosure () -> String? = nil, _ body: () -> Int32
    ) throws(SystemCallError) {
        let result = body()
        if result != 0 { throw SystemCallError(call: call, errno: result, context: context()) }
    }

    /// For calls that return a pointer and set errno when it is NULL.
    @inlinable
    public static func checkPointer<T>(
        _ call: String, context: @autoclosure () -> String? = nil, _ body: () -> T?
    ) throws(SystemCallError) -> T {
        if let value = body() { return value }
        let error = currentErrno()
        throw SystemCallError(call: call, errno: error == 0 ? EINVAL : error, context: context())
    }

    @inlinable
    public static func currentErrno() -> Int32 {
        #if canImport(Glibc)
        return Glibc.errno
        #else
        return Musl.errno
        #endif
    }

    @inlinable
    public static func setErrno(_ value: Int32) {
        #if canImport(Glibc)
        Glibc.errno = value
        #else
        Musl.errno = value
        #endif
    }
}
