/// What a peer may do with registered memory.
public struct MemoryAccess: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Usable as the source of local work requests and as a receive buffer.
    public static let localWrite = MemoryAccess(rawValue: 1 << 0)
    /// The peer may RDMA WRITE into it through an exported window.
    public static let remoteWrite = MemoryAccess(rawValue: 1 << 1)
    /// The peer may RDMA READ from it.
    public static let remoteRead = MemoryAccess(rawValue: 1 << 2)
}

/// Registered memory on one connection (a verbs MR): a base address, a length, a local key
/// for work requests and a remote key for exported windows.
public struct MemoryRegistration: Sendable, Hashable {
    public let address: UInt64
    public let length: Int
    public let localKey: UInt32
    public let remoteKey: UInt32
    public let access: MemoryAccess

    public init(address: UInt64, length: Int, localKey: UInt32, remoteKey: UInt32, access: MemoryAccess) {
        self.address = address
        self.length = length
        self.localKey = localKey
        self.remoteKey = remoteKey
        self.access = access
    }

    /// Local bytes `[offset, offset+length)` of this registration for a work request.
    @inline(__always)
    public func slice(offset: Int, length: Int) -> LocalSlice {
        precondition(offset >= 0 && length >= 0 && offset + length <= self.length, "slice outside registration")
        return LocalSlice(address: address + UInt64(offset), length: length, localKey: localKey)
    }

    /// The whole registration as a local slice.
    public var wholeSlice: LocalSlice { LocalSlice(address: address, length: length, localKey: localKey) }

    /// The window the peer needs to write into `[offset, offset+length)` of this memory.
    public func window(offset: Int = 0, length: Int? = nil) -> RemoteWindow {
        let length = length ?? (self.length - offset)
        precondition(offset >= 0 && length >= 0 && offset + length <= self.length, "window outside registration")
        return RemoteWindow(address: address + UInt64(offset), length: UInt64(length), remoteKey: remoteKey)
    }
}

/// Local memory named by a work request: address, length and the registration's local key
/// (the verbs scatter/gather element).
public struct LocalSlice: Sendable, Hashable {
    public var address: UInt64
    public var length: Int
    public var localKey: UInt32

    public init(address: UInt64, length: Int, localKey: UInt32) {
        self.address = address
        self.length = length
        self.localKey = localKey
    }
}

/// A region of the peer's memory this side was allowed to write: what the peer sends over the
/// control channel after registering (address in the peer's address space, length, rkey).
public struct RemoteWindow: Sendable, Hashable, CustomStringConvertible {
    public var address: UInt64
    public var length: UInt64
    public var remoteKey: UInt32

    public init(address: UInt64, length: UInt64, remoteKey: UInt32) {
        self.address = address
        self.length = length
        self.remoteKey = remoteKey
    }

    /// The target `[offset, offset+length)` of this window for a write.
    @inline(__always)
    public func slice(offset: UInt64, length: Int) -> RemoteSlice {
        RemoteSlice(address: address &+ offset, remoteKey: remoteKey)
    }

    public var description: String {
        "window 0x\(String(address, radix: 16))+\(length) rkey 0x\(String(remoteKey, radix: 16))"
    }
}

/// The target of one WRITE: an address in the peer's space and the window's key. The length
/// is the local slice's.
public struct RemoteSlice: Sendable, Hashable {
    public var address: UInt64
    public var remoteKey: UInt32

    public init(address: UInt64, remoteKey: UInt32) {
        self.address = address
        self.remoteKey = remoteKey
    }
}
