/// One WRITE (or WRITE_WITH_IMM) of a post list for `VerbsConnection.postWrites`.
public struct VerbsWriteRequest: Sendable, Hashable {
    public var local: LocalSlice
    public var remote: RemoteSlice
    public var id: UInt64
    public var signaled: Bool
    public var immediate: UInt32?

    public init(local: LocalSlice, remote: RemoteSlice, id: UInt64, signaled: Bool, immediate: UInt32? = nil) {
        self.local = local
        self.remote = remote
        self.id = id
        self.signaled = signaled
        self.immediate = immediate
    }
}
