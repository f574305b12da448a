/// One behaviour every backend must show, written once and run against each backend by the
/// test suite and by `rdmig selftest transport` (which is how it runs inside the Soft-RoCE
/// guest, where no test bundle exists). `run` throws `ConformanceFailure` when the backend
/// misbehaves and `ConformanceSkip` when the case does not apply in this environment.
public struct ConformanceCase: Sendable {
    public var name: String
    public var run: @Sendable (ConformanceEnvironment) throws -> Void

    public init(_ name: String, run: @escaping @Sendable (ConformanceEnvironment) throws -> Void) {
        self.name = name
        self.run = run
    }
}
