/// QEMU's version as its QMP greeting and `query-version` report it.
public struct QEMUVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var micro: Int
    /// The distribution's package string, e.g. "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1".
    public var package: String

    public init(major: Int, minor: Int, micro: Int, package: String = "") {
        self.major = major
        self.minor = minor
        self.micro = micro
        self.package = package
    }

    /// Reads `{"qemu": {"major": .., "minor": .., "micro": ..}, "package": ".."}`.
    public init?(_ value: QMPValue?) {
        guard let qemu = value?["qemu"], let major = qemu["major"]?.int64Value,
              let minor = qemu["minor"]?.int64Value, let micro = qemu["micro"]?.int64Value else { return nil }
        self.init(major: Int(major), minor: Int(minor), micro: Int(micro),
                  package: value?["package"]?.stringValue ?? "")
    }

    public static func < (a: QEMUVersion, b: QEMUVersion) -> Bool {
        (a.major, a.minor, a.micro) < (b.major, b.minor, b.micro)
    }

    public var description: String {
        let base = "\(major).\(minor).\(micro)"
        return package.isEmpty ? base : "\(base) (\(package))"
    }

    /// x.y.z only.
    public var number: String { "\(major).\(minor).\(micro)" }
}
