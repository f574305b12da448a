/// What `QEMUMigrationSource` tells a guard that outlives this process (rdmig's QEMU
/// watchdog) about an outgoing migration, so that the guard can put QEMU back if the process
/// dies without running its own clean-up (SIGKILL, the OOM killer, a crash).
///
/// The calls come in order: `arm` once, before the first change to QEMU; `preSwitchover` when
/// QEMU stopped the guest and waits for `migrate-continue`; `continuing` right before that
/// command. Whoever owns the guard releases it when its work with QEMU is over.
public protocol QEMUSourceWatch: Sendable {
    /// Before any change to QEMU: what to restore. A throw stops the migration before it
    /// changed anything.
    func arm(_ plan: QEMUSourceRecovery.Plan) throws
    /// QEMU waits at pre-switchover with the guest stopped: the wait must stay bounded.
    func preSwitchover()
    /// `migrate-continue` follows: from here QEMU may write the stream's end, and a
    /// destination that gets it runs the guest, so the guard must not resume this copy.
    func continuing()
}
