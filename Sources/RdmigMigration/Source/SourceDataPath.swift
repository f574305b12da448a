import RdmigChannels
import RdmigDeviceState
import RdmigTransport

/// What the layout phase sets up for the pages and the VF state to travel, used by every
/// later phase: the guest's memory registered and a page channel into the destination's
/// window, this side's digest thread, the dirty log, and the VF state stream.
final class SourceDataPath {
    let guest: SyntheticGuest
    let region: GuestMemoryRegion
    let session: MigrationSession
    let pages: PageChannel
    let pageRegion: PageChannel.Region
    let digester: ChunkDigester
    /// The VF state stream into the destination's ring; nil without devices.
    let deviceStream: ByteStreamSender?
    var recordEncoder = ChunkRecordEncoder()
    /// One chunk record at a time is encoded here before it goes into the stream.
    let recordBuffer: UnsafeMutableRawBufferPointer
    private let registration: MemoryRegistration
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
        if let deviceRing {
            do {
                deviceStream = try ByteStreamSender(router: session.router, ring: deviceRing)
            } catch {
                throw MigrationError(.layout, "opening the VF state stream: \(error)")
            }
        } else {
            deviceStream = nil
        }
        let memory = region.bytes(of: 0..<region.pageCount)
        do {
            registration = try session.connection.register(memory, access: [.localWrite])
            pageRegion = try PageChannel.Region(id: region.id, memory: UnsafeRawBufferPointer(memory), registration: registration,
                                                peerWindow: window, pageSize: region.pageSize)
            var pageConfiguration = PageChannel.Configuration()
            // "No write completed for this long" is the progress timeout.
            pageConfiguration.completionTimeout = migration.progressTimeout
            pages = try PageChannel(router: session.router, control: session.control, configuration: pageConfiguration)
        } catch {
            throw MigrationError(.layout, "preparing the page channel: \(error)")
        }
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
        recordBuffer = .allocate(byteCount: ChunkRecordHeader.size + ChunkRecordHeader.defaultMaxPayload, alignment: 64)
    }

    deinit {
        stopDirtyLog()
        recordBuffer.deallocate()
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

    func deregisterGuestMemory() {
        _ = try? session.connection.deregister(registration)
    }
}
