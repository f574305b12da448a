/// Which migration phase a chunk record's device data belongs to.
public enum ChunkPhase: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Read in PRE_COPY while the guest runs; may be superseded by later data.
    case precopy = 1
    /// Read in STOP_COPY with the guest paused; the final state.
    case stopCopy = 2

    public var description: String { self == .precopy ? "precopy" : "stopcopy" }
}
