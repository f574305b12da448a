import RdmigChannels
import RdmigTransport

/// The source service's migration: connect, authenticate, pre-copy the guest's memory and VF
/// state while it runs, switch over when the policy says so, commit or give the guest back.
///
/// Exactly one running copy: until COMMIT has been delivered to the destination (its send
/// completed, which on RC means the peer acknowledged it), every failure resumes the guest
/// here; after that the guest belongs to the destination. The protocol's phases are the
/// methods of `SourceMigrationRun`; this type only configures a run and reports its outcome.
public final class MigrationSource {
    public struct Options {
        public var endpoint: TransportEndpoint
        public var backend: any TransportBackend
        public var transportOptions: TransportOptions
        public var migration: MigrationConfiguration
        public var deviceSpecs: [String]
        public var key: PreSharedKey
        /// How long any single wait for the peer may take.
        public var peerTimeout: Duration = .seconds(60)
        /// ib-sw object changes per second while the guest runs (pre-copy dirties VF state).
        public var deviceChangesPerSecond: Int = 20_000
        /// CPUs for the completion poller (the transport's own threads take
        /// `transportOptions.threadCPUs`).
        public var pollerCPUs: [Int32] = []
        public var log: @Sendable (String) -> Void = { _ in }
        public var progress: (MigrationProgress) -> Void = { _ in }
        /// Why the migration must stop (a signal), nil while it may go on. Before COMMIT a stop
        /// gives the guest back to the source; after it, the hand-over is finished first.
        public var stopRequested: (@Sendable () -> String?)?
        /// How long, after losing the destination between COMMIT and RESUMED, this side keeps
        /// reconnecting to ask where the guest runs ([service] resolve-timeout). The guest
        /// stays paused here meanwhile: it is resumed only if the destination says it does not
        /// run it.
        public var resolveTimeout: Duration = .seconds(120)
        /// Whether to ask for an encrypted transport (`--encrypt`).
        public var encryption: EncryptionPolicy = .auto
        /// Page channels to ask for (`--channels`), each its own connection and thread; the
        /// destination may accept fewer.
        public var channels: Int = 1

        public init(endpoint: TransportEndpoint, backend: any TransportBackend, transportOptions: TransportOptions,
                    migration: MigrationConfiguration, deviceSpecs: [String], key: PreSharedKey) {
            self.endpoint = endpoint
            self.backend = backend
            self.transportOptions = transportOptions
            self.migration = migration
            self.deviceSpecs = deviceSpecs
            self.key = key
        }
    }

    let options: Options

    public init(options: Options) {
        self.options = options
    }

    /// Runs the migration to its end. The report's status is `completed` only when the
    /// destination verified and resumed the guest.
    public func run() -> MigrationReport {
        let run = SourceMigrationRun(options: options)
        do {
            try run.migrate()
        } catch {
            run.giveUp(error)
        }
        return run.finish()
    }
}

/// Where the guest runs, as the source knows it. Every failure is handled by what this says:
/// before COMMIT the guest is the source's to resume; after it, the destination's.
enum GuestOwnership: Equatable {
    /// Pre-copy (or before): the guest runs here.
    case runningOnSource
    /// Switchover: paused here, COMMIT not sent; any failure resumes it here.
    case pausedOnSource
    /// COMMIT was delivered and neither RESUMED nor the destination's RESOLUTION came back:
    /// the destination may run the guest, so it stays paused here and is never resumed.
    case committed
    /// The destination said it runs the guest (RESUMED, or RESOLUTION after a lost link).
    case resumedOnDestination
}
