#if canImport(Glibc)
import Glibc
#endif
import RdmigDeviceState
import RdmigSystem
import RdmigTransport

/// A VF state provider on the source, with its stream sender and, for the ib-sw model, the
/// thread that keeps changing it while the guest runs (so pre-copy has dirty state to resend).
/// Shared by native and QEMU mode.
package struct SourceDevice {
    package let id: UInt32
    package let provider: any DeviceStateProvider
    package var sender: DeviceStateSender
    package var mutator: IBMutatorThread?
    /// The destination acknowledged the initial state (switchover-ack).
    package var acknowledged = false

    /// One device per spec, numbered in order (the ids LAYOUT announces).
    package static func make(specs: [String], changesPerSecond: Int) throws(MigrationError) -> [SourceDevice] {
        var devices: [SourceDevice] = []
        for (index, spec) in specs.enumerated() {
            let provider: any DeviceStateProvider
            do {
                provider = try DeviceStateProviders.make(spec: spec)
            } catch {
                throw MigrationError(.setup, "VF \(spec): \(error)")
            }
            var mutator: IBMutatorThread?
            if let ib = provider as? IBSoftwareDeviceStateProvider, changesPerSecond > 0 {
                do {
                    mutator = try IBMutatorThread(provider: ib, changesPerSecond: changesPerSecond)
                } catch {
                    throw MigrationError(.setup, "starting the ib-sw VF's activity: \(error)")
                }
            }
            devices.append(SourceDevice(id: UInt32(index), provider: provider,
                                        sender: DeviceStateSender(provider: provider, tag: UInt32(index)), mutator: mutator))
        }
        return devices
    }
}

/// Connects, retrying a refused connection until the connect timeout: orchestrators start
/// `rdmig dest` and `rdmig source` together, and the destination may not listen yet.
package func connectRetryingRefusal(_ backend: any TransportBackend, to endpoint: TransportEndpoint,
                                    options: TransportOptions) throws(MigrationError) -> any TransportConnection {
    let deadline = ContinuousClock.now + options.connectTimeout
    while true {
        do {
            return try backend.connect(to: endpoint, options: options)
        } catch {
            if case .connectionRefused = error, ContinuousClock.now < deadline {
                usleep(100_000)
                continue
            }
            throw MigrationError(.setup, "connecting to the destination at \(endpoint): \(error)")
        }
    }
}
