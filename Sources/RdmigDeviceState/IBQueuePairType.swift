/// A queue pair's transport (enum ibv_qp_type values).
public enum IBQueuePairType: UInt8, Sendable, CaseIterable {
    case reliableConnected = 2
    case unreliableConnected = 3
    case unreliableDatagram = 4
}
