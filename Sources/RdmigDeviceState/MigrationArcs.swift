/// The uAPI's migration state machine for a device without the optional P2P states: the
/// direct arcs, and the combination transitions built from them as the kernel builds them
/// (vfio_mig_get_next_state, torvalds/linux drivers/vfio/vfio_main.c): the shortest path,
/// never passing *through* a saving state (PRE_COPY, STOP_COPY), and STOP_COPY -> PRE_COPY
/// refused outright.
enum MigrationArcs {
    static let direct: [DeviceMigrationState: [DeviceMigrationState]] = [
        .running: [.stop, .preCopy],
        .preCopy: [.running, .stopCopy],
        .stop: [.running, .stopCopy, .resuming],
        .stopCopy: [.stop],
        .resuming: [.stop],
    ]

    /// The states passed through from `from` to `to` (ending with `to`); nil when there is
    /// no allowed path. Empty when `from == to`.
    static func path(from: DeviceMigrationState, to: DeviceMigrationState) -> [DeviceMigrationState]? {
        if from == to { return [] }
        if from == .stopCopy && (to == .preCopy || to == .preCopyP2P) { return nil }
        guard direct[from] != nil, direct[to] != nil || to == .stopCopy else { return nil }
        var previous: [DeviceMigrationState: DeviceMigrationState] = [:]
        var queue = [from]
        var head = 0
        while head < queue.count {
            let state = queue[head]
            head += 1
            if state != from && state.isSaving { continue }
            for next in direct[state] ?? [] where next != from && previous[next] == nil {
                previous[next] = state
                if next == to {
                    var path = [to]
                    var step = state
                    while step != from {
                        path.append(step)
                        step = previous[step]!
                    }
                    return path.reversed()
                }
                queue.append(next)
            }
        }
        return nil
    }
}
