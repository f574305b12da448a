/// Delivers the migration stream to the destination QEMU (in rdmig: from the byte-stream
/// channel; in tests: `LoopbackStreamRelay`).
public protocol QEMUIncomingStreamRelay: Sendable {
    /// Writes the stream arriving from the source into `fd` until the source's end of stream.
    /// Throws when the stream broke off before its end (the source side died): the destination
    /// QEMU must not resume a guest from a partial stream.
    ///
    /// The migration driver owns `fd` (do not close it; `shutdown(fd, SHUT_WR)` at the end is
    /// fine). On failure the driver shuts `fd` down and cancels the relay's task; the relay must
    /// then stop. Blocking calls belong on a dedicated thread (`DedicatedThread.run`).
    func relayIncoming(to fd: Int32) async throws -> QEMURelayStatistics

    /// True when the relay can take QEMU's channel as a pipe (then `fd` is the pipe's write
    /// end, non-blocking; the driver cannot shut a pipe down, so on failure it swaps `fd` for
    /// /dev/null, where the relay's next write fails, and cancels the task). False: a stream
    /// socket.
    var acceptsPipe: Bool { get }
}

extension QEMUIncomingStreamRelay {
    public var acceptsPipe: Bool { false }
}
