import RdmigSystem

/// Runs blocking work (read/write on a socket, a byte-stream channel's relay loop) on its own
/// OS thread and awaits it. The concurrency pool has one thread per core (two here): a relay
/// blocking one of them for a whole migration would starve QMP handling and the other relay.
public enum DedicatedThread {
    /// `cpus`: where the thread may run (empty: anywhere), e.g. the RDMA device's NUMA node
    /// for a relay that copies into the transport's registered buffers.
    public static func run<Value: Sendable>(
        name: String, cpus: [Int32] = [], _ body: @escaping @Sendable () throws -> Value
    ) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            do {
                // Not joined: the thread ends with `body`, and SystemThread detaches on release.
                _ = try SystemThread(name: name, cpus: cpus) {
                    continuation.resume(with: Result { try body() })
                }
            } catch {
                continuation.resume(throwing: error)
            }
        }
    }
}
