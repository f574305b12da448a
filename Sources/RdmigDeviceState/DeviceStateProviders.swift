/// Makes device-state providers from the specs the CLI and config take (`--vf SPEC`).
public enum DeviceStateProviders {
    /// The kinds `make(spec:)` understands, with an example each.
    public static let kinds: [(kind: String, example: String)] = [
        ("ib-sw", "ib-sw:qps=1000"),
        ("vfio", "vfio:/dev/vfio/devices/vfio0"),
    ]

    /// `ib-sw[:key=value,...]` (see `IBVFConfiguration`) or `vfio:PATH` (an absolute path to
    /// a VFIO device cdev).
    public static func make(spec: String) throws(DeviceStateError) -> any DeviceStateProvider {
        let colon = spec.firstIndex(of: ":")
        let kind = String(spec[..<(colon ?? spec.endIndex)])
        let argument = colon.map { String(spec[spec.index(after: $0)...]) } ?? ""
        switch kind {
        case "ib-sw":
            return try IBSoftwareDeviceStateProvider(spec: spec)
        case "vfio":
            guard argument.hasPrefix("/") else {
                throw .invalidSpec(
                    spec: spec,
                    reason: argument.isEmpty
                        ? "vfio needs the device's path, e.g. vfio:/dev/vfio/devices/vfio0"
                        : "the vfio path '\(argument)' must be absolute, e.g. vfio:/dev/vfio/devices/vfio0")
            }
            return try VFIODeviceStateProvider(path: argument)
        default:
            let known = kinds.map { "\($0.kind) (e.g. \($0.example))" }.joined(separator: ", ")
            throw .invalidSpec(
                spec: spec,
                reason: kind.isEmpty ? "no provider kind: use \(known)" : "unknown provider kind '\(kind)': use \(known)")
        }
    }
}
