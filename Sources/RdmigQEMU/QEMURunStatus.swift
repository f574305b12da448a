/// What `query-status` says about the guest (RunState in qapi/run-state.json).
public struct QEMURunStatus: Sendable, Hashable, CustomStringConvertible {
    /// "running", "paused", "inmigrate", "postmigrate", "finish-migrate", "prelaunch", ...
    public var status: String
    /// True when the vCPUs run.
    public var running: Bool

    public init(status: String, running: Bool) {
        self.status = status
        self.running = running
    }

    init(_ value: QMPValue) throws(QMPError) {
        guard let status = value["status"]?.stringValue, let running = value["running"]?.boolValue else {
            throw .unexpectedReply(command: "query-status", detail: "no status/running in \(value)")
        }
        self.init(status: status, running: running)
    }

    /// Started with `-incoming` and waiting for (or loading) an incoming migration.
    public var isWaitingForIncomingMigration: Bool { status == "inmigrate" }
    /// Its state went to a destination: stopped for good unless someone resumes it.
    public var isPostMigrate: Bool { status == "postmigrate" }

    public var description: String { status }
}
