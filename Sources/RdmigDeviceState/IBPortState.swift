/// A port's logical state (enum ibv_port_state values).
public enum IBPortState: UInt8, Sendable, CaseIterable {
    case down = 1
    case initialize = 2
    case armed = 3
    case active = 4
}
