import CRDMA
import RdmigSystem

/// Which RDMA device an IP address is on, or routes through, as rdma_cm itself decides it:
/// `rdma_bind_addr` for an address of this host, `rdma_resolve_addr` for a peer's. Both
/// leave the id's verbs context set exactly when the address belongs to an RDMA device.
public enum RDMAAddressLookup {
    public enum Outcome: Sendable, Equatable {
        /// The address is served by `device` (port 0 when it is a wildcard on every device).
        case device(name: String, port: UInt8, reason: String)
        /// No RDMA device serves the address, and why.
        case none(reason: String)

        public var reason: String {
            switch self {
            case .device(_, _, let reason), .none(let reason): return reason
            }
        }
    }

    /// Looks up `host` (the port does not matter: the lookup binds port 0).
    public static func lookup(_ host: String, timeout: Duration = .seconds(2)) -> Outcome {
        let devices: [RDMADevice]
        do {
            devices = try RDMADevice.list()
        } catch {
            return .none(reason: "cannot list RDMA devices: \(error)")
        }
        guard !devices.isEmpty else { return .none(reason: "no RDMA device found") }
        return lookup(host, devices: devices, timeout: timeout)
    }

    static func lookup(_ host: String, devices: [RDMADevice], timeout: Duration) -> Outcome {
        let probe = TransportEndpoint(host: host, port: 0)
        var address: SocketAddress
        do {
            address = try SocketAddress.resolve(probe, passive: true)
        } catch {
            return .none(reason: "\(error)")
        }
        if address.isLoopback {
            return .none(reason: "\(host) is a loopback address, not on an RDMA device")
        }
        if address.isWildcard {
            let names = devices.map(\.name).joined(separator: ", ")
            return .device(name: names, port: 0, reason: "\(host) listens on every RDMA device (\(names))")
        }
        let channel: CMEventChannel
        do {
            channel = try CMEventChannel()
        } catch {
            return .none(reason: "\(error)")
        }
        // Each id below goes at the end of its block, while the channel it was made on lives.
        return withExtendedLifetime(channel) { lookup(host, address: &address, channel: channel, timeout: timeout) }
    }

    private static func lookup(_ host: String, address: inout SocketAddress, channel: CMEventChannel, timeout: Duration) -> Outcome {
        // An address of this host: binding tells whether its interface is an RDMA netdev.
        do {
            let identifier = try CMIdentifier(channel: channel)
            let bound = address.withSockaddr { rdma_bind_addr(identifier.pointer, $0) }
            if bound == 0 {
                guard let device = identifier.deviceName else {
                    return .none(reason: "\(host) is not on an RDMA device")
                }
                let port = identifier.pointer.pointee.port_num
                return .device(name: device, port: port, reason: "\(host) is on RDMA device \(device) port \(port)")
            }
            let error = SystemCall.currentErrno()
            if error != EADDRNOTAVAIL {
                return .none(reason: "\(host) is not on an RDMA device (rdma_bind_addr: \(SystemCallError.name(of: error)))")
            }
        } catch {
            return .none(reason: "\(error)")
        }
        // Not local: ask rdma_cm how it would reach the peer.
        do {
            let identifier = try CMIdentifier(channel: channel)
            let deadline = ContinuousClock.now.advanced(by: timeout)
            let started = address.withSockaddr { rdma_resolve_addr(identifier.pointer, nil, $0, VerbsTransport.stepTimeout(deadline)) }
            if started != 0 {
                let error = SystemCall.currentErrno()
                return .none(reason: "\(host) is not reachable through an RDMA device (rdma_resolve_addr: \(SystemCallError.name(of: error)))")
            }
            guard let event = try channel.waitForEvent(until: deadline) else {
                return .none(reason: "resolving \(host) through rdma_cm timed out after \(formatFixed(timeout.seconds, decimals: 1)) s")
            }
            guard event.type == RDMA_CM_EVENT_ADDR_RESOLVED, let device = identifier.deviceName else {
                let status = event.status < 0 ? SystemCallError.name(of: -event.status) : "status \(event.status)"
                return .none(reason: "\(host) is not reachable through an RDMA device (\(event.name): \(status))")
            }
            let port = identifier.pointer.pointee.port_num
            return .device(name: device, port: port, reason: "\(host) is reached through RDMA device \(device) port \(port)")
        } catch {
            return .none(reason: "\(error)")
        }
    }
}
