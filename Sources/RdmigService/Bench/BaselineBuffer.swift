/// One plain pump's buffer in one benchmark process: a plain allocation, filled (so faulted
/// in) before any run, used by one pump thread at a time.
final class BaselineBuffer: @unchecked Sendable {
    // @unchecked: the memory is handed to one thread (the pump's) and the owner waits for it.
    let bytes: UnsafeMutableRawBufferPointer
    let kind: BaselineBufferKind
    /// Bytes per send() / recv() slot.
    let writeSize: Int

    init(kind: BaselineBufferKind, writeSize: Int, messageSize: Int, queueDepth: Int) {
        self.kind = kind
        self.writeSize = writeSize
        bytes = .allocate(
            byteCount: kind.bytes(writeSize: writeSize, messageSize: messageSize, queueDepth: queueDepth), alignment: 4096)
        TransportBenchmark.fillSource(bytes)
    }

    deinit { bytes.deallocate() }
}
