import RdmigChannels
import RdmigDeviceState
import RdmigTransport

/// What the layout phase sets up for the pages and the VF state to travel, used by every
/// later phase: the page channels (each with the guest's memory registered on its connection
/// and writing into the destination's window there), this side's digest thread, the dirty
/// log, and the VF state stream.
final class SourceDataPath {
    let guest: SyntheticGuest
    let region: GuestMemoryRegion
    /// The migration's session: every message that is not about one channel's pages.
    let session: MigrationSession
    /// Page channel 0 runs on `session`; the others on connections that joined it.
    private(set) var lanes: [SourcePageLane] = []
    let digester: ChunkDigester
    /// The VF state stream into the destination's ring; nil without devices.
    let deviceStream: SourceDeviceStream?
    private let dirtyLog: any DirtyLog
    /// The synthetic guest's own log lives as long as the guest; another one is this run's.
    private let ownsDirtyLog: Bool
    private var dirtyLogStopped = false

    init(guest: SyntheticGuest, session: MigrationSession, window: RemoteWindow, deviceRing: StreamRing?,
         migration: MigrationConfiguration) throws(MigrationError) {
        self.guest = guest
        self.session = session
        let region = guest.region
        self.region = region
        deviceStream = try deviceRing.map { (ring) throws(MigrationError) in try SourceDeviceStream(session: session, ring: ring) }
        lanes = [try SourcePageLane(index: 0, session: session, region: region, window: window, migration: migration)]
        do {
            digester = try ChunkDigester(region: region, chunkSize: ChunkDigester.chunkSize(pageSize: region.pageSize),
                                         seed: session.keys.digestSeed)
        } catch {
            throw MigrationError(.setup, "starting the digest thread: \(error)")
        }
        ownsDirtyLog = migration.dirtyLog != .synthetic
        do {
            switch migration.dirtyLog {
            case .synthetic: dirtyLog = guest.dirtyLog
            case .userfaultfd: dirtyLog = try UserfaultfdDirtyLog(region: region)
            }
            try dirtyLog.start()
        } catch {
            throw MigrationError(.setup, "starting the \(migration.dirtyLog.rawValue) dirty log: \(error)")
        }
    }

    deinit {
        closeJoinedSessions()
        stopDirtyLog()
    }

    /// Moves the pages dirtied since the last collection into `bitmap`.
    func collect(into bitmap: inout DirtyBitmap) throws(MigrationError) -> Int {
        do {
            return try dirtyLog.collectAndClear(into: &bitmap)
        } catch {
            throw MigrationError(.precopy, "collecting the dirty log: \(error)")
        }
    }

    /// Stops a dirty log this run started (once): before the guest is resumed or handed over.
    func stopDirtyLog() {
        guard ownsDirtyLog, !dirtyLogStopped else { return }
        dirtyLogStopped = true
        dirtyLog.stop()
    }

    /// Adds page channel `lanes.count` on `session`, a connection that joined the migration.
    func addLane(session: MigrationSession, window: RemoteWindow, migration: MigrationConfiguration) throws(MigrationError) {
        lanes.append(try SourcePageLane(index: lanes.count, session: session, region: region, window: window, migration: migration))
    }

    /// No wait for write completions goes past `deadline` on any channel (the switchover budget).
    func setCompletionDeadline(_ deadline: ContinuousClock.Instant?) {
        for lane in lanes { lane.pages.completionDeadline = deadline }
    }

    func deregisterGuestMemory() {
        for lane in lanes { lane.deregister() }
    }

    /// Closes the joined channels' sessions (channel 0's is the migration's, closed with it).
    func closeJoinedSessions() {
        for lane in lanes.dropFirst() { lane.session.close() }
    }
}
