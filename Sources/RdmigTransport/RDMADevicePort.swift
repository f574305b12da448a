import CRDMA

extension RDMADevice {
    /// One physical port of a device.
    public struct Port: Sendable, Equatable, CustomStringConvertible {
        public enum State: String, Sendable {
            case down, initializing, armed, active, activeDeferred = "active-deferred", unknown
        }

        public enum LinkLayer: String, Sendable {
            case infiniband = "InfiniBand"
            case ethernet = "Ethernet"
            case unspecified
        }

        public var number: UInt8
        public var state: State
        public var linkLayer: LinkLayer
        /// Active path MTU in bytes (256 ... 4096).
        public var activeMTU: Int
        public var maxMTU: Int
        /// GID table entry 0, written as an IPv6 address.
        public var gid0: String
        /// Local identifier; 0 on Ethernet (RoCE) ports.
        public var lid: UInt16
        public var gidTableLength: Int
        /// Largest message one work request may move.
        public var maxMessageSize: UInt32

        public init(
            number: UInt8, state: State, linkLayer: LinkLayer, activeMTU: Int, maxMTU: Int,
            gid0: String, lid: UInt16, gidTableLength: Int, maxMessageSize: UInt32
        ) {
            self.number = number
            self.state = state
            self.linkLayer = linkLayer
            self.activeMTU = activeMTU
            self.maxMTU = maxMTU
            self.gid0 = gid0
            self.lid = lid
            self.gidTableLength = gidTableLength
            self.maxMessageSize = maxMessageSize
        }

        public var description: String {
            "port \(number) \(state.rawValue), \(linkLayer.rawValue), MTU \(activeMTU), GID[0] \(gid0)"
                + (linkLayer == .infiniband ? ", LID \(lid)" : "")
        }
    }
}

extension RDMADevice.Port.State {
    init(_ state: ibv_port_state) {
        switch state {
        case IBV_PORT_DOWN: self = .down
        case IBV_PORT_INIT: self = .initializing
        case IBV_PORT_ARMED: self = .armed
        case IBV_PORT_ACTIVE: self = .active
        case IBV_PORT_ACTIVE_DEFER: self = .activeDeferred
        default: self = .unknown
        }
    }
}

extension RDMADevice.Port.LinkLayer {
    init(_ value: UInt8) {
        switch Int(value) {
        case IBV_LINK_LAYER_INFINIBAND: self = .infiniband
        case IBV_LINK_LAYER_ETHERNET: self = .ethernet
        default: self = .unspecified
        }
    }
}
