import RdmigChannels
import RdmigDeviceState

/// The destination's side of a device the source's LAYOUT announces. Shared by native and
/// QEMU mode, as `SourceDevice` is on the other side.
package enum DestinationDevice {
    /// A provider ready to load the device's state: the same state format version as the
    /// source streams, stopped, then RESUMING (VFIO migration v2's destination path).
    package static func resumingProvider(for entry: MigrationMessage.DeviceLayout) throws(MigrationError) -> any DeviceStateProvider {
        let provider: any DeviceStateProvider
        do {
            provider = try DeviceStateProviders.make(spec: entry.kind)
        } catch {
            throw MigrationError(.layout, "VF \(entry.kind): \(error)")
        }
        guard provider.streamVersion == entry.stateVersion else {
            throw MigrationError(.layout, "VF \(entry.kind): the source streams state version \(entry.stateVersion), this side loads \(provider.streamVersion)")
        }
        do {
            try provider.transition(to: .stop)
            try provider.enterResuming()
        } catch {
            throw MigrationError(.layout, "VF \(entry.kind): \(error)")
        }
        return provider
    }
}
