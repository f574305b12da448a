/// How the destination side drives QEMU's incoming migration.
public struct QEMUDestinationConfiguration: Sendable, Hashable {
    /// The name under which QEMU holds the migration fd between `getfd` and `migrate-incoming`.
    public var fdName: String
    /// From `migrate-incoming` to QEMU's `completed`.
    public var timeout: Duration
    /// From `cont` to QEMU's RESUME event.
    public var resumeTimeout: Duration
    /// After completion, how long the relay may take to see the end of the stream before it is
    /// stopped (the guest does not wait for it).
    public var relayGracePeriod: Duration
    /// For cleaning up after a failure: QEMU's verdict, the relay's stop.
    public var abortTimeout: Duration
    /// After a failure before completion, tell the destination QEMU to quit (it never ran the
    /// guest, and it cannot take another incoming migration). Failures after completion never
    /// quit it: then it holds the only complete copy of the guest.
    public var quitOnFailure: Bool

    public init(fdName: String = "rdmig-migration", timeout: Duration = .seconds(600),
                resumeTimeout: Duration = .seconds(30), relayGracePeriod: Duration = .seconds(10),
                abortTimeout: Duration = .seconds(30), quitOnFailure: Bool = true) {
        self.fdName = fdName
        self.timeout = timeout
        self.resumeTimeout = resumeTimeout
        self.relayGracePeriod = relayGracePeriod
        self.abortTimeout = abortTimeout
        self.quitOnFailure = quitOnFailure
    }

    /// What is wrong with the configuration, in words; nil when it can be used.
    public var problem: String? {
        if fdName.isEmpty || fdName.first!.isNumber {
            return "fd name '\(fdName)' must not be empty or start with a digit (QEMU reads fd:N as a descriptor number)"
        }
        return nil
    }
}
