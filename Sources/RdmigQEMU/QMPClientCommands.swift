import RdmigSystem

/// The QMP commands rdmig's QEMU mode uses, typed (qapi/migration.json, qapi/misc.json,
/// qapi/run-state.json in QEMU).
extension QMPClient {
    public func queryVersion() async throws(QMPError) -> QEMUVersion {
        let value = try await execute("query-version")
        guard let version = QEMUVersion(value) else {
            throw .unexpectedReply(command: "query-version", detail: "no qemu.major/minor/micro in \(value)")
        }
        return version
    }

    public func queryStatus() async throws(QMPError) -> QEMURunStatus {
        try QEMURunStatus(await execute("query-status"))
    }

    public func queryMigrate() async throws(QMPError) -> QEMUMigrationInfo {
        QEMUMigrationInfo(try await execute("query-migrate"))
    }

    /// `migrate-set-capabilities`, e.g. ["events": true, "pause-before-switchover": false].
    public func setMigrationCapabilities(_ capabilities: [String: Bool]) async throws(QMPError) {
        let list = capabilities.sorted { $0.key < $1.key }.map { name, state -> QMPValue in
            ["capability": .string(name), "state": .bool(state)]
        }
        try await execute("migrate-set-capabilities", arguments: ["capabilities": .array(list)])
    }

    /// `migrate-set-parameters`, e.g. ["downtime-limit": 300, "max-bandwidth": 10737418240].
    public func setMigrationParameters(_ parameters: [String: QMPValue]) async throws(QMPError) {
        try await execute("migrate-set-parameters", arguments: .object(parameters))
    }

    /// `query-migrate-capabilities`: each capability's state by name.
    public func queryMigrationCapabilities() async throws(QMPError) -> [String: Bool] {
        let list = try await execute("query-migrate-capabilities")
        var states: [String: Bool] = [:]
        for entry in list.arrayValue ?? [] {
            if let name = entry["capability"]?.stringValue, let state = entry["state"]?.boolValue { states[name] = state }
        }
        return states
    }

    /// `query-migrate-parameters`, as QEMU returns it.
    public func queryMigrationParameters() async throws(QMPError) -> QMPValue {
        try await execute("query-migrate-parameters")
    }

    /// `getfd`: QEMU keeps its own copy of `fd` under `name` until a command consumes it
    /// (`migrate`/`migrate-incoming` with `fd:NAME`) or `closefd`. A name in use is replaced.
    public func getfd(name: String, fd: Int32) async throws(QMPError) {
        try await execute("getfd", arguments: ["fdname": .string(name)], passing: fd)
    }

    public func closefd(name: String) async throws(QMPError) {
        try await execute("closefd", arguments: ["fdname": .string(name)])
    }

    /// Starts an outgoing migration; returns once QEMU started it (progress comes as events).
    public func migrate(uri: String) async throws(QMPError) {
        try await execute("migrate", arguments: ["uri": .string(uri)])
    }

    /// Starts the incoming side on a QEMU started with `-incoming defer`. `exitOnError: false`
    /// keeps QEMU alive after a failed load so the failure can be queried (QEMU >= 9.1 has the
    /// argument, and otherwise exits; pass nil to leave it out).
    public func migrateIncoming(uri: String, exitOnError: Bool? = nil) async throws(QMPError) {
        var arguments: [String: QMPValue] = ["uri": .string(uri)]
        if let exitOnError { arguments["exit-on-error"] = .bool(exitOnError) }
        try await execute("migrate-incoming", arguments: .object(arguments))
    }

    /// Lets a migration paused in `state` (e.g. pre-switchover) go on.
    public func migrateContinue(from state: QEMUMigrationStatus) async throws(QMPError) {
        try await execute("migrate-continue", arguments: ["state": .string(state.rawValue)])
    }

    public func migrateCancel() async throws(QMPError) {
        try await execute("migrate_cancel")
    }

    /// Resumes the guest's vCPUs.
    public func cont() async throws(QMPError) {
        try await execute("cont")
    }

    public func stop() async throws(QMPError) {
        try await execute("stop")
    }

    /// Asks QEMU to exit. QEMU may close the connection before or after replying; both are success.
    public func quit() async throws(QMPError) {
        do {
            try await execute("quit")
        } catch let error where error.isDisconnection {
            return
        }
    }
}
