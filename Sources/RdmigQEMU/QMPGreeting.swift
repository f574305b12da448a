/// What QEMU sends first on a QMP connection: `{"QMP": {"version": {...}, "capabilities": [...]}}`.
public struct QMPGreeting: Sendable, Hashable {
    public var version: QEMUVersion
    /// Protocol capabilities QEMU offers (e.g. "oob"); rdmig enables none of them.
    public var capabilities: [String]

    public init(version: QEMUVersion, capabilities: [String]) {
        self.version = version
        self.capabilities = capabilities
    }

    package init?(message: QMPValue) {
        guard let qmp = message["QMP"], let version = QEMUVersion(qmp["version"]) else { return nil }
        self.init(version: version, capabilities: qmp["capabilities"]?.arrayValue?.compactMap(\.stringValue) ?? [])
    }
}
