#if canImport(Glibc)
import Glibc
#endif
import RdmigTransport

/// What the verbs tests need to know about this machine, read from the kernel's own view:
/// the RDMA devices in /sys/class/infiniband, and where the conformance suite can run.
enum VerbsTestEnvironment {
    /// Device names as sysfs lists them (empty without RDMA support or without devices).
    static let sysfsDeviceNames: [String] = {
        guard let directory = opendir("/sys/class/infiniband") else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }()

    static var hasDevice: Bool { !sysfsDeviceNames.isEmpty }

    /// The address the conformance suite listens and connects on: RDMIG_VERBS_HOST, else the
    /// first IPv4 address of an RDMA device's network interface with an active port.
    static let conformanceHost: String? = {
        if let configured = getenv("RDMIG_VERBS_HOST") {
            let host = String(cString: configured)
            if !host.isEmpty { return host }
        }
        guard let devices = try? RDMADevice.list() else { return nil }
        for device in devices where device.ports.contains(where: { $0.state == .active }) {
            if let address = device.ipv4Addresses.first { return address }
        }
        return nil
    }()

    /// Why the verbs conformance suite cannot run here, or nil when it can.
    static let conformanceSkipReason: String? = {
        guard hasDevice else {
            return "no RDMA device on this machine (/sys/class/infiniband is empty or missing): "
                + "the verbs conformance suite runs where one exists, e.g. the Soft-RoCE guest (Tests/softroce)"
        }
        guard conformanceHost != nil else {
            return "RDMA devices \(sysfsDeviceNames.joined(separator: ", ")) have no active port with an IPv4 address; "
                + "set RDMIG_VERBS_HOST to an address on an RDMA interface"
        }
        return nil
    }()
}
