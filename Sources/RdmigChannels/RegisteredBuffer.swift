import RdmigTransport

/// Page-aligned, zeroed memory registered on one connection for the channels' own use
/// (receive buffers, send slots, staging slots, rings): allocated and registered once, never
/// per message. Deregistered before it is freed, so the peer can never write into freed
/// memory through a stale window.
final class RegisteredBuffer: @unchecked Sendable {
    let memory: UnsafeMutableRawBufferPointer
    let registration: MemoryRegistration
    private let connection: any TransportConnection

    init(connection: any TransportConnection, byteCount: Int, access: MemoryAccess, purpose: String) throws(ChannelError) {
        precondition(byteCount > 0, "empty channel buffer")
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: byteCount, alignment: 4096)
        memory.initializeMemory(as: UInt8.self, repeating: 0)
        do {
            registration = try connection.register(memory, access: access)
        } catch {
            memory.deallocate()
            if case .registrationFailed(let detail) = error {
                throw .transport(.registrationFailed(detail: "\(purpose) (\(byteCount) bytes): \(detail)"))
            }
            throw .transport(error)
        }
        self.memory = memory
        self.connection = connection
    }

    /// `length` bytes at `offset`.
    @inline(__always)
    func bytes(offset: Int, length: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: memory[offset..<(offset + length)])
    }

    deinit {
        // A closed connection has dropped its registrations already; nothing to report then.
        try? connection.deregister(registration)
        memory.deallocate()
    }
}
