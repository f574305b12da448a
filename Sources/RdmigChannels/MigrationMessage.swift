/// The control messages of rdmig's native migration protocol (README "Safety" says what each
/// step guarantees), in the order a migration uses them:
///
/// HELLO both ways → AUTH both ways → LAYOUT (source) → WINDOWS (destination) →
/// STREAM_RING (each stream's receiver) → per pre-copy iteration: ZERO_PAGES*, ITERATION_DONE
/// (source), ZERO_PAGES_APPLIED (destination, when the iteration had zero pages) and
/// VF_STATE_DONE / SWITCHOVER_ACK for device state → SWITCHOVER (source, guest paused) → last
/// pages and device state → DIGESTS (source) → READY (destination) → COMMIT (source);
/// ABORT or ERROR from either side at any point before COMMIT. TOUCHED_CHUNKS (source, after
/// each iteration) tells the destination which digest chunks changed, so both sides keep
/// chunk digests up to date during pre-copy and only the last iteration's chunks are hashed
/// inside the downtime; RESUMED (destination) says the guest runs there after COMMIT.
///
/// A source that lost its destination after COMMIT without RESUMED does not know where the
/// guest runs: it reconnects, authenticates and sends RESOLVE (the migration's id) instead of
/// LAYOUT; the destination answers RESOLUTION — it runs the guest (it had COMMIT, or it was
/// still holding the verified copy paused and commits now), or it does not have it.
///
/// QEMU mode (HELLO with `qemuStream` on both sides) relays QEMU's own stream instead of
/// pages: LAYOUT with no regions (its devices are the VF state providers) → STREAM_RING for
/// the bandwidth probe, the QEMU stream and, with devices, the VF state → at QEMU's
/// pre-switchover: VF state, VF_STATE_DONE, DIGESTS (source) → READY (destination) →
/// QEMU_OUTCOME (destination): whether the guest runs there, with QEMU's event stamps.
public enum MigrationMessage: ControlMessage, Equatable {
    case hello(Hello)
    case auth(Auth)
    case layout(Layout)
    case windows(Windows)
    case streamRing(StreamRing)
    case iterationDone(IterationDone)
    case zeroPages(ZeroPages)
    case zeroPagesApplied(ZeroPagesApplied)
    case switchover(Switchover)
    case switchoverAck(SwitchoverAck)
    case vfStateDone(VFStateDone)
    case digests(Digests)
    case ready
    case commit
    case abort(Abort)
    case error(ErrorReport)
    case touchedChunks(TouchedChunks)
    case resumed
    case qemuOutcome(QEMUOutcome)
    case resolve(Resolve)
    case resolution(Resolution)
    case join(Join)

    /// The type codes on the wire. Codes are never reused; 0 is the router's setup frame.
    /// The most page channels one migration may use (LAYOUT's `channels`).
    public static let maximumPageChannels: UInt16 = 16

    public enum Kind: UInt16, CaseIterable, Sendable {
        case hello = 1
        case auth = 2
        case layout = 3
        case windows = 4
        case streamRing = 5
        case iterationDone = 6
        case zeroPages = 7
        case zeroPagesApplied = 8
        case switchover = 9
        case switchoverAck = 10
        case vfStateDone = 11
        case digests = 12
        case ready = 13
        case commit = 14
        case abort = 15
        case error = 16
        case touchedChunks = 17
        case resumed = 18
        case qemuOutcome = 19
        case resolve = 20
        case resolution = 21
        case join = 22

        public var wireName: String {
            switch self {
            case .hello: return "HELLO"
            case .auth: return "AUTH"
            case .layout: return "LAYOUT"
            case .windows: return "WINDOWS"
            case .streamRing: return "STREAM_RING"
            case .iterationDone: return "ITERATION_DONE"
            case .zeroPages: return "ZERO_PAGES"
            case .zeroPagesApplied: return "ZERO_PAGES_APPLIED"
            case .switchover: return "SWITCHOVER"
            case .switchoverAck: return "SWITCHOVER_ACK"
            case .vfStateDone: return "VF_STATE_DONE"
            case .digests: return "DIGESTS"
            case .ready: return "READY"
            case .commit: return "COMMIT"
            case .abort: return "ABORT"
            case .error: return "ERROR"
            case .touchedChunks: return "TOUCHED_CHUNKS"
            case .resumed: return "RESUMED"
            case .qemuOutcome: return "QEMU_OUTCOME"
            case .resolve: return "RESOLVE"
            case .resolution: return "RESOLUTION"
            case .join: return "JOIN"
            }
        }
    }

    public var kind: Kind {
        switch self {
        case .hello: return .hello
        case .auth: return .auth
        case .layout: return .layout
        case .windows: return .windows
        case .streamRing: return .streamRing
        case .iterationDone: return .iterationDone
        case .zeroPages: return .zeroPages
        case .zeroPagesApplied: return .zeroPagesApplied
        case .switchover: return .switchover
        case .switchoverAck: return .switchoverAck
        case .vfStateDone: return .vfStateDone
        case .digests: return .digests
        case .ready: return .ready
        case .commit: return .commit
        case .abort: return .abort
        case .error: return .error
        case .touchedChunks: return .touchedChunks
        case .resumed: return .resumed
        case .qemuOutcome: return .qemuOutcome
        case .resolve: return .resolve
        case .resolution: return .resolution
        case .join: return .join
        }
    }

    public var wireType: UInt16 { kind.rawValue }
    public var wireName: String { kind.wireName }

    public static func name(ofType type: UInt16) -> String? { Kind(rawValue: type)?.wireName }

    public func encodePayload(to writer: inout WireWriter) throws(WireError) {
        switch self {
        case .hello(let payload): try payload.encode(to: &writer)
        case .auth(let payload): try payload.encode(to: &writer)
        case .layout(let payload): try payload.encode(to: &writer)
        case .windows(let payload): try payload.encode(to: &writer)
        case .streamRing(let payload): try payload.encode(to: &writer)
        case .iterationDone(let payload): try payload.encode(to: &writer)
        case .zeroPages(let payload): try payload.encode(to: &writer)
        case .zeroPagesApplied(let payload): try payload.encode(to: &writer)
        case .switchover(let payload): try payload.encode(to: &writer)
        case .switchoverAck(let payload): try payload.encode(to: &writer)
        case .vfStateDone(let payload): try payload.encode(to: &writer)
        case .digests(let payload): try payload.encode(to: &writer)
        case .touchedChunks(let payload): try payload.encode(to: &writer)
        case .ready, .commit, .resumed: break
        case .abort(let payload): try payload.encode(to: &writer)
        case .error(let payload): try payload.encode(to: &writer)
        case .qemuOutcome(let payload): try payload.encode(to: &writer)
        case .resolve(let payload): try payload.encode(to: &writer)
        case .resolution(let payload): try payload.encode(to: &writer)
        case .join(let payload): try payload.encode(to: &writer)
        }
    }

    public static func decode(type: UInt16, payload reader: inout WireReader) throws(WireError) -> MigrationMessage {
        guard let kind = Kind(rawValue: type) else { throw .unknownMessageType(type) }
        switch kind {
        case .hello: return .hello(try Hello(from: &reader))
        case .auth: return .auth(try Auth(from: &reader))
        case .layout: return .layout(try Layout(from: &reader))
        case .windows: return .windows(try Windows(from: &reader))
        case .streamRing: return .streamRing(try StreamRing(from: &reader))
        case .iterationDone: return .iterationDone(try IterationDone(from: &reader))
        case .zeroPages: return .zeroPages(try ZeroPages(from: &reader))
        case .zeroPagesApplied: return .zeroPagesApplied(try ZeroPagesApplied(from: &reader))
        case .switchover: return .switchover(try Switchover(from: &reader))
        case .switchoverAck: return .switchoverAck(try SwitchoverAck(from: &reader))
        case .vfStateDone: return .vfStateDone(try VFStateDone(from: &reader))
        case .digests: return .digests(try Digests(from: &reader))
        case .ready: return .ready
        case .commit: return .commit
        case .abort: return .abort(try Abort(from: &reader))
        case .error: return .error(try ErrorReport(from: &reader))
        case .touchedChunks: return .touchedChunks(try TouchedChunks(from: &reader))
        case .resumed: return .resumed
        case .qemuOutcome: return .qemuOutcome(try QEMUOutcome(from: &reader))
        case .resolve: return .resolve(try Resolve(from: &reader))
        case .resolution: return .resolution(try Resolution(from: &reader))
        case .join: return .join(try Join(from: &reader))
        }
    }
}
