#if canImport(Glibc)
import Glibc
#endif

/// CPU time (user + system) this process has used, all threads (getrusage(RUSAGE_SELF)): the
/// difference over a relay is what it cost the host, its transport threads included.
public enum ProcessCPUTime {
    public static func now() -> Duration {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return .zero }
        func duration(_ time: timeval) -> Duration {
            .seconds(Int64(time.tv_sec)) + .microseconds(Int64(time.tv_usec))
        }
        return duration(usage.ru_utime) + duration(usage.ru_stime)
    }
}
