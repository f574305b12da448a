#if canImport(Glibc)
import Glibc
#endif
import RdmigQEMU

/// A source test guest with a few heartbeats behind it and an incoming destination
/// (`-incoming defer -S`), with the test's QMP clients connected. A QEMU's QMP socket serves
/// one client at a time: a test that runs rdmig processes keeps the guests' first sockets and
/// leaves `rdmigQMP` to them; a test that drives RdmigQEMU in-process takes `rdmigQMP`.
public struct QEMUTestPair: Sendable {
    public enum Sockets: Sendable {
        /// The test keeps `testQMP`; rdmig processes get `rdmigQMP`.
        case test
        /// The test (code under test in-process) takes `rdmigQMP`.
        case rdmig
    }

    public let source: QEMUTestGuest
    public let destination: QEMUTestGuest
    public let sourceQMP: QMPClient
    public let destinationQMP: QMPClient

    public func stop() {
        sourceQMP.close()
        destinationQMP.close()
        source.stop()
        destination.stop()
    }

    /// Starts the pair (256 MiB guests, 64 MiB working set at 20 MB/s: QEMUTestGuest's
    /// defaults) and prints which QEMU runs them and whether the odd-RAM-size workaround
    /// applies. Nothing is left running when it throws.
    public static func start(_ name: String, sockets: Sockets, label: String) async throws -> QEMUTestPair {
        let source = try await QEMUTestGuest.start(name: "\(name)-src")
        let destination: QEMUTestGuest
        do {
            destination = try await QEMUTestGuest.start(name: "\(name)-dst", incoming: true)
        } catch {
            source.stop()
            throw error
        }
        do {
            try await source.waitForHeartbeats(3, timeout: .seconds(60))
            let sourceQMP = try await QMPClient.connect(to: sockets == .test ? source.testQMP : source.rdmigQMP)
            let destinationQMP = try await QMPClient.connect(to: sockets == .test ? destination.testQMP : destination.rdmigQMP)
            let version = try await sourceQMP.queryVersion()
            let kvm = try await sourceQMP.execute("query-kvm")["enabled"]?.boolValue == true
            // run-guest.sh gives QEMU < 9.0 an odd RAM size: its TCG dirty tracking loses writes (FACTS.md).
            let oddRAM = version.major < 9 ? "odd-RAM-size workaround applied" : "no odd-RAM-size workaround needed"
            print("\(label): QEMU \(version) (\(kvm ? "KVM" : "TCG"), \(oddRAM)), 256 MiB guests, 64 MiB working set at 20 MB/s")
            return QEMUTestPair(source: source, destination: destination, sourceQMP: sourceQMP, destinationQMP: destinationQMP)
        } catch {
            source.stop()
            destination.stop()
            throw error
        }
    }
}
