import Synchronization

/// `ib-sw`: a software InfiniBand VF whose state migrates the way the seed thesis migrates
/// an HCA's VF state, through the VFIO v2 contract: object tables (ports, GIDs, PDs, MRs,
/// CQs, SRQs, QPs, counters) that change while the guest runs, a pre-copy of all objects
/// followed by the ones that changed, a stop-copy of the rest, and on the destination a
/// rebuild that is checked object by object.
///
/// Thread-safe: `step(_:)` (or an `IBMutatorThread`) may mutate the VF while a migration
/// reads it; every call takes one lock.
public final class IBSoftwareDeviceStateProvider: DeviceStateProvider {
    public let name: String
    public let kind = "ib-sw"
    public let configuration: IBVFConfiguration
    public var streamVersion: UInt32 { UInt32(IBStreamFormat.version) }
    public var supportsPreCopy: Bool { true }
    public var requiresSwitchoverAck: Bool { configuration.requiresSwitchoverAck }

    private struct Core: Sendable {
        var migrationState: DeviceMigrationState = .running
        var state: IBVFState
        var mutator: IBVFMutator
        var source: IBSourceSession?
        var resume: IBResumeSession?
    }

    private let core: Mutex<Core>

    public init(configuration: IBVFConfiguration, name: String? = nil) {
        self.configuration = configuration
        self.name = name ?? configuration.spec
        core = Mutex(Core(state: IBVFState(populating: configuration), mutator: IBVFMutator(seed: configuration.seed)))
    }

    /// From a spec such as `ib-sw:qps=1000`.
    public convenience init(spec: String) throws(DeviceStateError) {
        self.init(configuration: try IBVFConfiguration(parsing: spec), name: spec)
    }

    public var state: DeviceMigrationState { core.withLock { $0.migrationState } }

    /// A copy of the object tables as they are now.
    public func snapshot() -> IBVFState { core.withLock { $0.state } }

    /// Lets the guest change `count` things on its VF. Returns how many changes were made:
    /// 0 unless the device runs (RUNNING, PRE_COPY), since a stopped device must not change.
    @discardableResult
    public func step(_ count: Int) -> Int {
        core.withLock { core in
            guard core.migrationState.isRunning, count > 0 else { return 0 }
            core.mutator.apply(count, to: &core.state, touched: &core.source)
            return count
        }
    }

    public func transition(to target: DeviceMigrationState) throws(DeviceStateError) {
        try core.withLock { core throws(DeviceStateError) in
            let from = core.migrationState
            guard from != .error else {
                throw .invalidTransition(device: name, from: from, to: target, reason: "the device is in ERROR: reset it")
            }
            guard target != .runningP2P, target != .preCopyP2P else {
                throw .migrationUnsupported(
                    device: name, reason: "ib-sw has no P2P states (a device without VFIO_MIGRATION_P2P)")
            }
            guard let path = MigrationArcs.path(from: from, to: target) else {
                throw .invalidTransition(
                    device: name, from: from, to: target,
                    reason: target == .error ? "ERROR cannot be requested" : "the VFIO state machine has no such arc")
            }
            for next in path {
                try arc(from: core.migrationState, to: next, core: &core)
                core.migrationState = next
            }
        }
    }

    private func arc(from: DeviceMigrationState, to: DeviceMigrationState, core: inout Core) throws(DeviceStateError) {
        switch (from, to) {
        case (.running, .preCopy):
            core.source = IBSourceSession(shape: configuration.shape, stopped: false)
        case (.stop, .stopCopy):
            core.source = IBSourceSession(shape: configuration.shape, stopped: true)
        case (.preCopy, .stopCopy):
            core.source?.stopped = true
        case (.preCopy, .running), (.stopCopy, .stop):
            core.source = nil
        case (.stop, .resuming):
            core.resume = IBResumeSession(device: name, shape: configuration.shape)
        case (.resuming, .stop):
            let session = core.resume
            core.resume = nil
            if let reason = session?.rejection(of: core.state) {
                core.migrationState = .error
                throw .incompleteState(device: name, reason: reason)
            }
        default:
            break
        }
    }

    public func precopyInfo() throws(DeviceStateError) -> PrecopyInfo {
        try core.withLock { core throws(DeviceStateError) in
            guard core.migrationState == .preCopy, let source = core.source else {
                throw .wrongState(device: name, operation: "precopy info", state: core.migrationState, expected: "PRE_COPY")
            }
            return source.precopyInfo
        }
    }

    public func stopCopySize() throws(DeviceStateError) -> UInt64 {
        core.withLock { core in
            if let source = core.source { return source.remainingBytes }
            return UInt64(IBStreamFormat.headerEntrySize + configuration.shape.objectBytes + IBStreamFormat.endEntrySize)
        }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(DeviceStateError) -> DeviceStateRead {
        try core.withLock { core throws(DeviceStateError) in
            guard core.migrationState.isSaving, core.source != nil else {
                throw .wrongState(device: name, operation: "read", state: core.migrationState, expected: "PRE_COPY or STOP_COPY")
            }
            return core.source!.fill(buffer, state: core.state)
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws(DeviceStateError) {
        try core.withLock { core throws(DeviceStateError) in
            guard core.migrationState == .resuming, core.resume != nil else {
                throw .wrongState(device: name, operation: "write", state: core.migrationState, expected: "RESUMING")
            }
            do throws(DeviceStateError) {
                try core.resume!.consume(bytes, into: &core.state)
            } catch {
                // A device that cannot parse its stream has a half-loaded state: it fails the
                // load, and only a reset (the uAPI's way out of RESUMING) recovers it.
                core.migrationState = .error
                core.resume = nil
                throw error
            }
        }
    }

    /// Like a function-level reset: sessions end, and the VF comes back as freshly set up
    /// from its configuration (a reset VF keeps none of the guest's objects).
    public func reset() throws(DeviceStateError) {
        core.withLock { core in
            core.source = nil
            core.resume = nil
            core.state = IBVFState(populating: configuration)
            core.migrationState = .running
        }
    }

    public func stateDigest() throws(DeviceStateError) -> DeviceStateDigest? {
        core.withLock { $0.state.digest() }
    }
}
