import RdmigChannels
import Synchronization

/// What a destination service remembers of its recent migrations, so that a source which lost
/// the connection after COMMIT can learn where the guest runs (RESOLVE → RESOLUTION), as in
/// libvirt's Confirm phase: the destination is the side that knows whether COMMIT arrived.
///
/// Bounded: the newest `capacity` migrations (an id nobody asks about ages out).
package final class ResolutionLedger: Sendable {
    package struct Entry: Sendable {
        let migrationID: [UInt8]
        let outcome: MigrationMessage.Resolution.Outcome
        let detail: String
    }

    private let entries = Mutex<[Entry]>([])
    static let capacity = 64

    package init() {}

    package func record(_ migrationID: [UInt8], _ outcome: MigrationMessage.Resolution.Outcome, _ detail: String) {
        entries.withLock { entries in
            entries.removeAll { $0.migrationID == migrationID }
            entries.append(Entry(migrationID: migrationID, outcome: outcome, detail: detail))
            if entries.count > Self.capacity { entries.removeFirst(entries.count - Self.capacity) }
        }
    }

    /// The answer to RESOLVE for `migrationID`: what this service recorded, else "not here".
    package func resolution(for migrationID: [UInt8]) -> MigrationMessage.Resolution {
        let entry = entries.withLock { $0.last { $0.migrationID == migrationID } }
        guard let entry else {
            return .init(outcome: .notOnDestination, detail: "this destination service does not know the migration (it never verified it, or was restarted)")
        }
        return .init(outcome: entry.outcome, detail: entry.detail)
    }

    /// Answers a RESOLVE on `session` (best effort: the source retries if it does not hear it).
    package func answer(_ resolve: MigrationMessage.Resolve, on session: MigrationSession, log: @Sendable (String) -> Void) {
        let resolution = resolution(for: resolve.migrationID)
        log("RESOLVE from \(session.connection.peerEndpoint): \(resolution.outcome == .runsOnDestination ? "the guest runs here" : "the guest is not here") (\(resolution.detail))")
        try? session.send(.resolution(resolution), .commit, timeout: .seconds(5))
        session.close()
    }
}
