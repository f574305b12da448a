/// A queue pair's state (enum ibv_qp_state values). The connection cycle the model drives
/// is the one verbs applications run: RESET -> INIT -> RTR -> RTS, and on an error
/// ERR -> RESET to reconnect.
public enum IBQueuePairState: UInt8, Sendable, CaseIterable {
    case reset = 0
    case initialized = 1
    case readyToReceive = 2
    case readyToSend = 3
    case sendQueueDrained = 4
    case sendQueueError = 5
    case error = 6
}
