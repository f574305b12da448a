/// A conformance case does not apply where it runs (for example IPv6 when the environment's
/// host is not loopback, or ::1 is missing). It is reported as skipped with the reason, never
/// as passed.
public struct ConformanceSkip: Error, CustomStringConvertible, Sendable {
    public var reason: String

    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { "skipped: \(reason)" }
}
