import Logging

/// The migration capabilities and parameters one run changes, as they were before it set
/// them: put back on every way out (a lowered max-bandwidth or pause-before-switchover left
/// behind would catch whoever migrates this QEMU next), by the run itself or, when the
/// service was killed, by its watchdog (which receives them as `qmpValue`).
public struct QEMUMigrationSettings: Sendable, Hashable {
    public let capabilities: [String: Bool]
    public let parameters: [String: QMPValue]

    public init(capabilities: [String: Bool], parameters: [String: QMPValue]) {
        self.capabilities = capabilities
        self.parameters = parameters
    }

    /// `{"capabilities": {...}, "parameters": {...}}`.
    public var qmpValue: QMPValue {
        ["capabilities": .object(capabilities.mapValues { .bool($0) }), "parameters": .object(parameters)]
    }

    public init?(qmpValue value: QMPValue) {
        guard let capabilities = value["capabilities"]?.objectValue, let parameters = value["parameters"]?.objectValue else {
            return nil
        }
        var states: [String: Bool] = [:]
        for (name, state) in capabilities {
            guard let state = state.boolValue else { return nil }
            states[name] = state
        }
        self.init(capabilities: states, parameters: parameters)
    }

    /// Best effort, even in a cancelled task: QEMU may be gone. QEMU refuses capability
    /// changes while a migration is under way, so this belongs after its end.
    public func apply(on qmp: QMPClient, logger: Logger) async {
        do {
            try await applyOrThrow(on: qmp)
        } catch {
            logger.warning("could not restore QEMU's migration settings", metadata: ["error": "\(error)"])
        }
    }

    /// As `apply`, reporting the failure.
    public func applyOrThrow(on qmp: QMPClient) async throws(QMPError) {
        let result: Result<Void, QMPError> = await QMPClient.$ignoresCancellation.withValue(true) {
            do throws(QMPError) {
                if !capabilities.isEmpty { try await qmp.setMigrationCapabilities(capabilities) }
                if !parameters.isEmpty { try await qmp.setMigrationParameters(parameters) }
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }
}
