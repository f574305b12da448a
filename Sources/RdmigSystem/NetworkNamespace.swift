import CRdmigShims

/// Network namespaces, for benchmarks that put two processes on either side of an emulated
/// link (Perf/delay-line.c).
public enum NetworkNamespace {
    /// Moves the calling thread into the namespace bound at `path` (e.g. /run/netns/NAME, as
    /// `ip netns add` makes). Sockets belong to the namespace of the thread that creates them,
    /// and threads started afterwards from this one inherit it.
    public static func enter(path: String) throws(SystemCallError) {
        let error = rdmig_enter_network_namespace(path)
        if error != 0 { throw SystemCallError(call: "setns(CLONE_NEWNET)", errno: error, context: path) }
    }
}
