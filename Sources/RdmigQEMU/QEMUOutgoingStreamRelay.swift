/// Carries the source QEMU's migration stream to the destination (in rdmig: over the
/// byte-stream channel; in tests: `LoopbackStreamRelay`).
public protocol QEMUOutgoingStreamRelay: Sendable {
    /// Reads QEMU's stream from `fd` until end of file and carries it to the destination.
    /// Returns only when every byte has reached the destination's side (a byte-stream channel
    /// finished, its last writes completed); throws when the stream cannot be carried whole.
    ///
    /// The migration driver owns `fd`: the relay must not close it. When the migration is
    /// abandoned the driver shuts `fd` down (a blocked read returns 0 or fails) and cancels the
    /// relay's task; a relay that blocks anywhere else (waiting for credits) must then stop too.
    /// Blocking reads belong on a dedicated thread (`DedicatedThread.run`), never on the
    /// concurrency pool.
    func relayOutgoing(from fd: Int32) async throws -> QEMURelayStatistics
}
