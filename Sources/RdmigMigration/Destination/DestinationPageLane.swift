import RdmigChannels
import RdmigSystem
import RdmigTransport
import Synchronization

/// A page channel that joined the migration (channel 1 and up): its connection, the guest's
/// memory registered on it, and a thread that takes its ZERO_PAGES, TOUCHED_CHUNKS and
/// ITERATION_DONE in order — on the connection that carried the pages they fence — while the
/// migration's own thread serves channel 0 and the protocol.
final class DestinationPageLane: Sendable {
    let channel: Int
    let session: MigrationSession
    let windows: [MigrationMessage.RegionWindow]
    private let registrations: [MemoryRegistration]
    private let state: State
    private let thread: SystemThread

    /// Registers `memory` on the joined `session`; the thread starts at once.
    init(channel: Int, session: MigrationSession, memory: GuestMemory, pages: IncomingPages, cpus: [Int32]) throws(MigrationError) {
        self.channel = channel
        self.session = session
        let (registrations, windows) = try DestinationDataPath.export(memory, on: session.connection, naming: " on page channel \(channel)")
        self.registrations = registrations
        self.windows = windows
        let state = State()
        self.state = state
        do {
            thread = try SystemThread(name: "rdmig-pages-\(channel)", cpus: cpus) {
                Self.serve(channel: channel, session: session, pages: pages, state: state)
            }
        } catch {
            for registration in registrations { _ = try? session.connection.deregister(registration) }
            throw MigrationError(.layout, "starting page channel \(channel)'s thread: \(error)")
        }
    }

    /// Why the channel failed, once it did.
    var failure: MigrationError? { state.failure.withLock { $0 } }

    /// Stops and joins the thread, withdraws the windows, closes the connection (after the
    /// migration's session told the source the outcome). Calling it again does nothing.
    func close() {
        state.stopping.store(true, ordering: .releasing)
        thread.join()
        guard !state.closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for registration in registrations { _ = try? session.connection.deregister(registration) }
        session.close()
    }

    deinit {
        close()
    }

    private final class State: Sendable {
        let stopping = Atomic<Bool>(false)
        let closed = Atomic<Bool>(false)
        let failure = Mutex<MigrationError?>(nil)
    }

    /// How long one receive waits before the thread looks whether it is being stopped.
    static let stopCheckInterval = Duration.milliseconds(50)

    private static func serve(channel: Int, session: MigrationSession, pages: IncomingPages, state: State) {
        while !state.stopping.load(ordering: .acquiring) {
            do throws(MigrationError) {
                guard let message = try session.receiveIfAny(.precopy, during: "receiving on page channel \(channel)", timeout: stopCheckInterval) else {
                    continue
                }
                guard try pages.receive(message, channel: channel, session: session, phase: .precopy) else {
                    throw MigrationError(.precopy, "unexpected \(message.wireName) on page channel \(channel)")
                }
            } catch {
                state.failure.withLock { $0 = $0 ?? error }
                return
            }
        }
    }
}
