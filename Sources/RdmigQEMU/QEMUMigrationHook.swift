/// A step the migration waits for while the guest is stopped: on the source at pre-switchover
/// (move the VF's STOP_COPY state out of band), on the destination before `cont` (load it).
/// Throwing abandons the migration. Its time counts into the guest's downtime.
public typealias QEMUMigrationHook = @Sendable () async throws -> Void
