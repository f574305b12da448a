#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// The memory registered on one `tcp` connection, looked up by key without a lock: by the
/// receiver thread for every incoming WRITE (before it reads the payload) and by the posting
/// thread for every work request.
///
/// A key names its slot (`(key ^ salt) & mask`) and the registration's generation, so a key
/// of a deregistered registration never matches a later one in the same slot. Each slot is a
/// seqlock: its `version` is odd while the slot is free or being changed, even while it holds
/// a registration; a reader that saw the same even version before and after reading the fields
/// read a consistent registration.
///
/// Deregistration must not return while the receiver thread is placing a payload into the
/// memory (the caller may free it next, as after ibv_dereg_mr). The receiver announces the
/// slot it writes into in `placingSlot` and re-checks the version afterwards; deregistration
/// makes the version odd first and then waits until `placingSlot` is no longer its slot.
/// Both sides use sequentially consistent operations, so at least one of them sees the other.
final class TCPRegistrationTable: @unchecked Sendable {
    static let capacity = 1024
    private static let slotBits: UInt32 = 10
    private static let mask = UInt32(capacity - 1)

    final class Slot: Sendable {
        let version = Atomic<UInt64>(1)
        let key = Atomic<UInt32>(0)
        let address = Atomic<UInt64>(0)
        let length = Atomic<UInt64>(0)
        let access = Atomic<UInt32>(0)
    }

    /// A registration as read from its slot.
    struct Found {
        var slot: Int
        var version: UInt64
        var address: UInt64
        var length: UInt64
        var access: MemoryAccess
    }

    private let slots: [Slot]
    private let salt: UInt32
    /// The slot the receiver thread is writing a payload into, or -1.
    let placingSlot = Atomic<Int>(-1)
    /// The slot the sender thread is reading a payload from (to seal it), or -1.
    let sendingSlot = Atomic<Int>(-1)

    private struct Allocation {
        var free: [Int]
        var generations: [UInt32]
    }
    private let allocation: Mutex<Allocation>

    init() {
        slots = (0..<TCPRegistrationTable.capacity).map { _ in Slot() }
        salt = UInt32.random(in: 0...UInt32.max) & ~TCPRegistrationTable.mask
        allocation = Mutex(Allocation(free: Array((0..<TCPRegistrationTable.capacity).reversed()),
                                      generations: Array(repeating: 0, count: TCPRegistrationTable.capacity)))
    }

    /// Control path: adds a registration and returns its key.
    func register(address: UInt64, length: Int, access: MemoryAccess) throws(TransportError) -> UInt32 {
        let claimed: (slot: Int, key: UInt32)? = allocation.withLock { allocation in
            guard let slot = allocation.free.popLast() else { return nil }
            // 22 bits of generation; generation 0 is skipped so that no key is 0 ^ salt.
            var generation = (allocation.generations[slot] &+ 1) & ((1 << (32 - TCPRegistrationTable.slotBits)) - 1)
            if generation == 0 { generation = 1 }
            allocation.generations[slot] = generation
            return (slot, ((generation << TCPRegistrationTable.slotBits) | UInt32(slot)) ^ salt)
        }
        guard let claimed else {
            throw .registrationFailed(detail: "more than \(TCPRegistrationTable.capacity) registrations on one tcp "
                + "connection: deregister unused memory or register larger regions")
        }
        let slot = slots[claimed.slot]
        // The slot is free, so its version is odd: readers ignore it while the fields change.
        slot.key.store(claimed.key, ordering: .sequentiallyConsistent)
        slot.address.store(address, ordering: .sequentiallyConsistent)
        slot.length.store(UInt64(length), ordering: .sequentiallyConsistent)
        slot.access.store(access.rawValue, ordering: .sequentiallyConsistent)
        slot.version.add(1, ordering: .sequentiallyConsistent)
        return claimed.key
    }

    /// Control path: withdraws the registration with `key`; returns once no payload is being
    /// placed into it. `waitWhilePlacing` is asked whether to keep waiting (false when the
    /// connection's receiver is gone).
    func deregister(key: UInt32, waitWhilePlacing: () -> Bool) throws(TransportError) {
        let index = Int((key ^ salt) & TCPRegistrationTable.mask)
        let slot = slots[index]
        let valid: Bool = allocation.withLock { _ in
            let version = slot.version.load(ordering: .sequentiallyConsistent)
            guard version & 1 == 0, slot.key.load(ordering: .sequentiallyConsistent) == key else { return false }
            slot.version.add(1, ordering: .sequentiallyConsistent)
            return true
        }
        guard valid else {
            throw .invalidWorkRequest(detail: "deregister: key 0x\(String(key, radix: 16)) is not registered on this connection")
        }
        while (placingSlot.load(ordering: .sequentiallyConsistent) == index || sendingSlot.load(ordering: .sequentiallyConsistent) == index)
                && waitWhilePlacing() {
            // Cold path: one payload read finishing; 50 µs naps keep this off the CPU.
            var pause = timespec(tv_sec: 0, tv_nsec: 50_000)
            nanosleep(&pause, nil)
        }
        allocation.withLock { $0.free.append(index) }
    }

    /// Hot path: the registration with `key`, if it is registered now.
    @inline(__always)
    func find(key: UInt32) -> Found? {
        let index = Int((key ^ salt) & TCPRegistrationTable.mask)
        let slot = slots[index]
        while true {
            let before = slot.version.load(ordering: .sequentiallyConsistent)
            guard before & 1 == 0 else { return nil }
            let slotKey = slot.key.load(ordering: .sequentiallyConsistent)
            let address = slot.address.load(ordering: .sequentiallyConsistent)
            let length = slot.length.load(ordering: .sequentiallyConsistent)
            let access = slot.access.load(ordering: .sequentiallyConsistent)
            let after = slot.version.load(ordering: .sequentiallyConsistent)
            guard before == after else { continue }
            guard slotKey == key else { return nil }
            return Found(slot: index, version: before, address: address, length: length,
                         access: MemoryAccess(rawValue: access))
        }
    }

    /// Receiver thread: announces that it will place a payload into `found`'s memory; false when
    /// the registration was withdrawn meanwhile (then nothing may be written).
    @inline(__always)
    func beginPlacing(_ found: Found) -> Bool {
        placingSlot.store(found.slot, ordering: .sequentiallyConsistent)
        if slots[found.slot].version.load(ordering: .sequentiallyConsistent) == found.version { return true }
        placingSlot.store(-1, ordering: .sequentiallyConsistent)
        return false
    }

    @inline(__always)
    func endPlacing() {
        placingSlot.store(-1, ordering: .releasing)
    }

    /// Sender thread: announces that it will read a payload from `found`'s memory; false when
    /// the registration was withdrawn meanwhile (then nothing may be read: the memory may be
    /// freed, as after ibv_dereg_mr).
    @inline(__always)
    func beginSending(_ found: Found) -> Bool {
        sendingSlot.store(found.slot, ordering: .sequentiallyConsistent)
        if slots[found.slot].version.load(ordering: .sequentiallyConsistent) == found.version { return true }
        sendingSlot.store(-1, ordering: .sequentiallyConsistent)
        return false
    }

    @inline(__always)
    func endSending() {
        sendingSlot.store(-1, ordering: .releasing)
    }

    /// Local slices of work requests: `[address, address+length)` inside the registration with
    /// `key`, which must allow `access` (empty: any registration).
    @inline(__always)
    func contains(key: UInt32, address: UInt64, length: Int, access: MemoryAccess) -> Bool {
        guard let found = find(key: key), found.access.isSuperset(of: access) else { return false }
        return TCPRegistrationTable.range(address: address, length: UInt64(length), isInside: found)
    }

    /// `[address, address+length)` lies inside `found`, computed without overflow.
    @inline(__always)
    static func range(address: UInt64, length: UInt64, isInside found: Found) -> Bool {
        guard address >= found.address else { return false }
        let offset = address - found.address
        return offset <= found.length && length <= found.length - offset
    }
}
