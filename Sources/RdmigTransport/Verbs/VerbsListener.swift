import CRDMA
import RdmigSystem
import Synchronization

/// A listening RDMA CM id and the thread that accepts on it (`ListenerEventLoop`).
///
/// Connections are accepted as requests arrive and wait in a queue for `accept`. `close`
/// stops the thread, releases requests still being set up, closes connections nobody
/// accepted, then destroys the listening id and its channel. Accepted connections have their
/// own channels and live on.
public final class VerbsListener: TransportListener, @unchecked Sendable {
    public let localEndpoint: TransportEndpoint
    /// The device the listening address is on; nil when listening on a wildcard address.
    public let deviceName: String?

    private let channel: CMEventChannel
    private var listenIdentifier: CMIdentifier?
    private let queue: AcceptQueue
    private let stopBell: Doorbell
    private var thread: SystemThread?
    private let closed = Atomic<Bool>(false)

    init(
        channel: CMEventChannel, identifier: consuming CMIdentifier, localEndpoint: TransportEndpoint,
        queue: AcceptQueue, stopBell: Doorbell
    ) {
        self.channel = channel
        self.deviceName = identifier.deviceName
        self.listenIdentifier = Optional(identifier)
        self.localEndpoint = localEndpoint
        self.queue = queue
        self.stopBell = stopBell
    }

    func start(options: TransportOptions, relaxedOrdering: Bool, hello: ConnectionHello) throws(TransportError) {
        guard let pointer = listenIdentifier?.pointer else { return }
        let loop = ListenerEventLoop(
            channel: channel, listenIdentifier: .init(pointer: pointer), listenEndpoint: localEndpoint,
            queue: queue, options: options, relaxedOrdering: relaxedOrdering, hello: hello)
        let stopBell = self.stopBell
        do {
            thread = try SystemThread(name: "rdmig-verbs-listen", cpus: options.threadCPUs) {
                var running = loop
                running.run(stop: stopBell)
            }
        } catch {
            throw .system(error)
        }
    }

    deinit {
        close()
    }

    public func accept(timeout: Duration?) throws(TransportError) -> any TransportConnection {
        try acceptVerbs(timeout: timeout)
    }

    /// `accept` with the concrete type, for the verbs-only API (post lists, staging cache).
    public func acceptVerbs(timeout: Duration?) throws(TransportError) -> VerbsConnection {
        try queue.pop(timeout: timeout, endpoint: localEndpoint)
    }

    public func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.close()
        stopBell.forceRing()
        thread?.join()
        listenIdentifier = nil
    }
}
