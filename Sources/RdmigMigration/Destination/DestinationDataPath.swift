import RdmigChannels
import RdmigDeviceState
import RdmigTransport

/// What the destination exposes for one migration once LAYOUT passed its checks: the guest's
/// memory mapped, pinned and exported as windows, a digest thread per region, the VF state
/// stream and its loader thread. `close()` withdraws all of it, on every outcome.
final class DestinationDataPath {
    let memory: GuestMemory
    private let connection: any TransportConnection
    private(set) var registrations: [MemoryRegistration] = []
    private(set) var windows: [MigrationMessage.RegionWindow] = []
    private(set) var digesters: [UInt32: ChunkDigester] = [:]
    private(set) var devices: [MigrationDestination.Device] = []
    private(set) var loader: DeviceStateLoader?
    /// Set once the regions are exported: what every page channel's messages do.
    private(set) var pages: IncomingPages?
    /// Page channels 1 and up, which joined the migration.
    private(set) var lanes: [DestinationPageLane] = []
    private var closed = false

    init(memory: GuestMemory, connection: any TransportConnection) {
        self.memory = memory
        self.connection = connection
    }

    deinit {
        close()
    }

    /// Registers each region for the source's WRITEs and starts its digest thread.
    func exportRegions(digestSeed: UInt64) throws(MigrationError) {
        (registrations, windows) = try Self.export(memory, on: connection, naming: "")
        for region in memory.regions {
            do {
                let chunkSize = ChunkDigester.chunkSize(pageSize: region.pageSize)
                digesters[region.id] = try ChunkDigester(region: region, chunkSize: chunkSize, seed: digestSeed)
            } catch {
                throw MigrationError(.layout, "exporting region \(region.id): \(error)")
            }
        }
    }

    /// Registers every region of `memory` on `connection` for the peer's WRITEs (on a page
    /// channel's connection too: registrations are per connection). On a failure, what was
    /// registered is withdrawn; `naming` ends the error's description (e.g. the channel).
    static func export(_ memory: GuestMemory, on connection: any TransportConnection, naming: String)
        throws(MigrationError) -> ([MemoryRegistration], [MigrationMessage.RegionWindow]) {
        var registrations: [MemoryRegistration] = []
        var windows: [MigrationMessage.RegionWindow] = []
        for region in memory.regions {
            do {
                let registration = try connection.register(region.bytes(of: 0..<region.pageCount), access: [.localWrite, .remoteWrite])
                registrations.append(registration)
                windows.append(.init(regionID: region.id, window: registration.window()))
            } catch {
                for registration in registrations { _ = try? connection.deregister(registration) }
                throw MigrationError(.layout, "exporting region \(region.id)\(naming): \(error)")
            }
        }
        return (registrations, windows)
    }

    /// The shared handling of the page channels' messages, over the exported regions.
    func receivePages(guestBytes: UInt64, log: @escaping @Sendable (String) -> Void) -> IncomingPages {
        let pages = IncomingPages(memory: memory, digesters: digesters, guestBytes: guestBytes, log: log)
        self.pages = pages
        return pages
    }

    func addLane(_ lane: DestinationPageLane) {
        lanes.append(lane)
    }

    /// The first page channel that failed, with why.
    var laneFailure: (channel: Int, error: MigrationError)? {
        for lane in lanes { if let failure = lane.failure { return (lane.channel, failure) } }
        return nil
    }

    /// A resuming provider for each device LAYOUT announces.
    func addDevices(_ entries: [MigrationMessage.DeviceLayout]) throws(MigrationError) {
        for entry in entries {
            let provider = try DestinationDevice.resumingProvider(for: entry)
            devices.append(MigrationDestination.Device(id: entry.id, provider: provider, needsAck: entry.needsSwitchoverAck))
        }
    }

    /// The ring the source streams VF state into, read by the loader's thread; nil without devices.
    func openDeviceStream(router: CompletionRouter) throws(MigrationError) -> StreamRing? {
        guard !devices.isEmpty else { return nil }
        do {
            let stream = try ByteStreamReceiver(router: router, channel: .deviceState, configuration: .init(slotCount: 8, slotSize: 256 * 1024))
            loader = try DeviceStateLoader(stream: stream, providers: Dictionary(uniqueKeysWithValues: devices.map { ($0.id, $0.provider) }))
            return stream.ring
        } catch {
            throw MigrationError(.layout, "opening the VF state stream: \(error)")
        }
    }

    func acknowledge(deviceAt index: Int) {
        devices[index].acknowledged = true
    }

    /// Stops the joined page channels and the loader, withdraws the windows, stops the digest threads (each holds its region:
    /// one left running would keep the guest mapped and pinned after the migration ended).
    /// Calling it again does nothing.
    func close() {
        guard !closed else { return }
        closed = true
        for lane in lanes { lane.close() }
        loader?.close()
        for registration in registrations { _ = try? connection.deregister(registration) }
        for digester in digesters.values { digester.close() }
    }
}
