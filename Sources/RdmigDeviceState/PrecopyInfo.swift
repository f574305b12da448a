/// What `VFIO_MIG_GET_PRECOPY_INFO` reports during PRE_COPY: bytes of the initial state not
/// yet read, and bytes of state changed since it was read. The uAPI recommends leaving
/// PRE_COPY only once `initialBytes` reaches 0 (leaving earlier makes STOP_COPY slower).
public struct PrecopyInfo: Equatable, Sendable, CustomStringConvertible {
    public var initialBytes: UInt64
    public var dirtyBytes: UInt64

    public init(initialBytes: UInt64, dirtyBytes: UInt64) {
        self.initialBytes = initialBytes
        self.dirtyBytes = dirtyBytes
    }

    public var description: String { "initial \(initialBytes) B, dirty \(dirtyBytes) B" }
}
