import CRDMA
import Synchronization

/// The memory regions of one connection, deduplicated: registering the same address,
/// length and access again returns the same MR (one pin, one set of keys) and counts a
/// reference; the MR is deregistered the moment its last reference is withdrawn, so an
/// exported window stops accepting writes at once.
///
/// Staging buffers (`retained`) stay registered until the connection goes, however often
/// they are handed out: registration costs a pin and a kernel call per page range, which a
/// staging pool must not pay per use (the same reason NCCL and UCX keep registration caches).
///
/// Registration is the control path: a mutex is fine here; posting never touches this.
final class RegistrationCache: Sendable {
    struct Key: Hashable {
        var address: UInt
        var length: Int
        var flags: UInt32
    }

    /// An MR with its reference count; a class because dictionaries hold copyable values.
    final class Entry {
        var region: MemoryRegion?
        let registration: MemoryRegistration
        var references: Int
        var retained: Bool

        init(region: consuming MemoryRegion, registration: MemoryRegistration, retained: Bool) {
            self.region = Optional(region)
            self.registration = registration
            self.references = 1
            self.retained = retained
        }
    }

    struct State {
        var entries: [Key: Entry] = [:]
        var keyByLocalKey: [UInt32: Key] = [:]
    }

    private let state = Mutex(State())

    /// Registers `memory` (or counts another reference to its existing MR).
    func register(
        _ memory: UnsafeMutableRawBufferPointer, access: MemoryAccess, flags: UInt32,
        retained: Bool, protectionDomain: UnsafeMutablePointer<ibv_pd>
    ) throws(TransportError) -> MemoryRegistration {
        guard let base = memory.baseAddress, memory.count > 0 else {
            throw .invalidWorkRequest(detail: "cannot register an empty buffer")
        }
        let key = Key(address: UInt(bitPattern: base), length: memory.count, flags: flags)
        let result: Result<MemoryRegistration, TransportError> = state.withLock { state in
            if let entry = state.entries[key] {
                entry.references += 1
                entry.retained = entry.retained || retained
                return .success(entry.registration)
            }
            let region: MemoryRegion
            do throws(TransportError) {
                region = try MemoryRegion(protectionDomain: protectionDomain, memory: memory, flags: flags)
            } catch {
                return .failure(error)
            }
            let registration = MemoryRegistration(
                address: UInt64(key.address), length: key.length,
                localKey: region.localKey, remoteKey: region.remoteKey, access: access)
            state.entries[key] = Entry(region: region, registration: registration, retained: retained)
            state.keyByLocalKey[registration.localKey] = key
            return .success(registration)
        }
        return try result.get()
    }

    /// Withdraws one reference; the last one deregisters the MR now (unless retained).
    func deregister(_ registration: MemoryRegistration) throws(TransportError) {
        let result: Result<Void, TransportError> = state.withLock { state in
            guard let key = state.keyByLocalKey[registration.localKey],
                  let entry = state.entries[key],
                  entry.registration.address == registration.address,
                  entry.registration.length == registration.length
            else {
                return .failure(.invalidWorkRequest(detail: "deregister: memory at 0x\(String(registration.address, radix: 16)) "
                    + "(\(registration.length) bytes, lkey 0x\(String(registration.localKey, radix: 16))) is not registered on this connection"))
            }
            entry.references -= 1
            guard entry.references <= 0, !entry.retained else { return .success(()) }
            state.entries[key] = nil
            state.keyByLocalKey[registration.localKey] = nil
            guard let region = entry.region.take() else { return .success(()) }
            do throws(TransportError) {
                try region.deregister()
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// Deregisters every MR, retained or not (connection teardown, before the PD goes).
    func deregisterAll() {
        let entries: [Entry] = state.withLock { state in
            let all = Array(state.entries.values)
            state.entries.removeAll()
            state.keyByLocalKey.removeAll()
            return all
        }
        for entry in entries {
            entry.region = nil
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
