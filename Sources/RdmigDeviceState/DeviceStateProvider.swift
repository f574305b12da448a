/// A VF's migratable state, driven the way the VFIO migration uAPI v2 drives a device:
/// a state machine (`transition(to:)`) plus one ordered, opaque byte stream per migration
/// session (`read(into:)` on the source, `write(_:)` on the destination).
///
/// Source: RUNNING -> PRE_COPY (read initial, then dirty state while the guest runs; watch
/// `precopyInfo()`) -> STOP_COPY (`stopCopySize()` predicts the rest; read to the end) ->
/// STOP. On any failure before commit the source returns to RUNNING (`abortToRunning()`):
/// the guest keeps running there.
/// Destination: RUNNING/STOP -> RESUMING (write the stream in order, any segmentation) ->
/// STOP (the provider checks the state is complete and consistent) -> RUNNING after commit.
///
/// All calls are control-path calls (one per piece of up to 1 MiB); providers are
/// thread-safe so a mutator or progress reporter may run beside the migration.
public protocol DeviceStateProvider: AnyObject, Sendable {
    /// The spec the provider was made from (`ib-sw:qps=1000`, `vfio:/dev/vfio/devices/vfio0`);
    /// names the device in errors and reports.
    var name: String { get }
    /// `ib-sw` or `vfio`: what the destination must create to load the stream.
    var kind: String { get }
    /// Version of the stream format, announced in LAYOUT so a destination can refuse a
    /// stream it cannot load before any byte is sent.
    var streamVersion: UInt32 { get }
    /// The device can do PRE_COPY (VFIO_MIGRATION_PRE_COPY); without it the whole state moves
    /// in STOP_COPY, during downtime.
    var supportsPreCopy: Bool { get }
    /// The destination must acknowledge that the initial pre-copy state is loaded before the
    /// source may switch over (QEMU's switchover-ack: loading the initial bytes before the
    /// stop cut an mlx5 VF's downtime from 1900 ms to 420 ms, see FACTS.md).
    var requiresSwitchoverAck: Bool { get }
    /// The current state (the last one set, or ERROR after a failed arc).
    var state: DeviceMigrationState { get }

    /// Moves the device to `target` (VFIO_DEVICE_FEATURE SET MIG_DEVICE_STATE). Arcs that
    /// start a session (RUNNING -> PRE_COPY, STOP -> STOP_COPY, STOP -> RESUMING) open the
    /// stream; leaving the saving group or RESUMING ends it. Leaving RESUMING validates the
    /// loaded state and fails (device in ERROR) when it is incomplete or inconsistent.
    func transition(to target: DeviceMigrationState) throws(DeviceStateError)

    /// PRE_COPY only: bytes of initial and of dirty state still to read.
    func precopyInfo() throws(DeviceStateError) -> PrecopyInfo

    /// Estimated bytes STOP_COPY will still produce (VFIO_DEVICE_FEATURE_MIG_DATA_SIZE); any
    /// state. Feeds the downtime prediction.
    func stopCopySize() throws(DeviceStateError) -> UInt64

    /// PRE_COPY or STOP_COPY: reads the next bytes of the stream into `buffer`.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(DeviceStateError) -> DeviceStateRead

    /// RESUMING only: appends `bytes` to the stream being loaded. Segmentation need not
    /// match the source's reads; order must.
    func write(_ bytes: UnsafeRawBufferPointer) throws(DeviceStateError)

    /// Recovers from ERROR (VFIO_DEVICE_RESET): the device is RUNNING afterwards.
    func reset() throws(DeviceStateError)

    /// A digest of the device's state for the switchover check, or nil when the state is
    /// opaque to rdmig (vfio: only the device can interpret its stream).
    func stateDigest() throws(DeviceStateError) -> DeviceStateDigest?
}

extension DeviceStateProvider {
    /// Source: RUNNING -> PRE_COPY.
    public func enterPreCopy() throws(DeviceStateError) { try transition(to: .preCopy) }

    /// Source: PRE_COPY (or RUNNING, through STOP) -> STOP_COPY. The guest must be paused.
    public func enterStopCopy() throws(DeviceStateError) { try transition(to: .stopCopy) }

    /// Destination: -> RESUMING (from RUNNING through STOP, as the uAPI's combination arc).
    public func enterResuming() throws(DeviceStateError) { try transition(to: .resuming) }

    /// Destination: RESUMING -> STOP (loaded and checked), then RUNNING when `run`.
    public func finishResuming(run: Bool) throws(DeviceStateError) {
        try transition(to: .stop)
        if run { try transition(to: .running) }
    }

    /// Source after a failed migration: back to RUNNING from wherever the device is, through
    /// a reset when it is in ERROR, so the guest keeps running with its device.
    public func abortToRunning() throws(DeviceStateError) {
        switch state {
        case .running:
            return
        case .error, .resuming:
            // The uAPI aborts RESUMING only by reset; ERROR is left only by reset.
            try reset()
        default:
            try transition(to: .running)
        }
    }
}
