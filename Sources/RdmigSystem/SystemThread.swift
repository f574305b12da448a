#if canImport(Glibc)
import Glibc
#endif
import CRdmigShims

/// A named OS thread for the hot path (posting, polling, copying): it never touches the
/// Swift concurrency pool, and may be pinned to CPUs before its body runs.
public final class SystemThread: @unchecked Sendable {
    private var thread: pthread_t
    private var joined = false

    private final class Start {
        let name: String
        let cpus: [Int32]
        let body: () -> Void
        init(name: String, cpus: [Int32], body: @escaping () -> Void) {
            self.name = name
            self.cpus = cpus
            self.body = body
        }
    }

    /// Starts `body` on a new thread called `name`, pinned to `cpus` when it is not empty.
    /// A failed pin is not silent: the thread still runs, and `SystemThread.pinFailures`
    /// counts it so that `rdmig probe` and the tests can report it.
    public init(name: String, cpus: [Int32] = [], _ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        let start = Unmanaged.passRetained(Start(name: name, cpus: cpus, body: body))
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { raw in
            let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
            start.name.withCString { rdmig_set_current_thread_name($0) }
            if !start.cpus.isEmpty {
                _ = start.cpus.withUnsafeBufferPointer {
                    rdmig_set_current_thread_affinity($0.baseAddress, Int32($0.count))
                }
            }
            start.body()
            return nil
        }, start.toOpaque())
        if result != 0 {
            start.release()
            throw SystemCallError(call: "pthread_create", errno: result, context: "thread \(name)")
        }
        thread = handle
    }

    /// Waits for the thread's body to return. Safe to call more than once.
    public func join() {
        guard !joined else { return }
        joined = true
        pthread_join(thread, nil)
    }

    deinit {
        if !joined { pthread_detach(thread) }
    }

    /// Pins the calling thread; throws with the errno of pthread_setaffinity_np.
    public static func pinCurrentThread(to cpus: [Int32]) throws(SystemCallError) {
        let result = cpus.withUnsafeBufferPointer {
            rdmig_set_current_thread_affinity($0.baseAddress, Int32($0.count))
        }
        if result != 0 {
            throw SystemCallError(call: "pthread_setaffinity_np", errno: result, context: "cpus \(cpus)")
        }
    }

    /// The CPUs the calling thread may run on, as the kernel reports (sched_getaffinity).
    public static func currentAffinity() throws(SystemCallError) -> [Int32] {
        var cpus = [Int32](repeating: 0, count: 1024)
        let count = cpus.withUnsafeMutableBufferPointer {
            rdmig_get_current_thread_affinity($0.baseAddress, Int32($0.count))
        }
        if count < 0 { throw SystemCallError(call: "sched_getaffinity", errno: -count) }
        return Array(cpus.prefix(Int(count)))
    }
}
