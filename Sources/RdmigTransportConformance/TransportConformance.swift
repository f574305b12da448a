import RdmigTransport

/// Where a conformance run happens: which backend, and which local address both ends use
/// (127.0.0.1 here; the guest's own IP for `verbs` over Soft-RoCE, since rdma_cm needs an
/// address bound to an RDMA device).
public struct ConformanceEnvironment: Sendable {
    public var backend: any TransportBackend
    public var host: String
    public var options: TransportOptions

    public init(backend: any TransportBackend, host: String = "127.0.0.1", options: TransportOptions = TransportOptions()) {
        self.backend = backend
        self.host = host
        self.options = options
    }
}

/// A conformance case failed: what was expected and what happened.
public struct ConformanceFailure: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var file: String
    public var line: Int

    public init(_ message: String, file: String = #fileID, line: Int = #line) {
        self.message = message
        self.file = file
        self.line = line
    }

    public var description: String { "\(message) (\(file):\(line))" }
}

/// One behaviour every backend must show, written once and run against each backend by the
/// test suite and by `rdmig selftest transport` (which is how it runs inside the Soft-RoCE
/// guest, where no test bundle exists).
public struct ConformanceCase: Sendable {
    public var name: String
    public var run: @Sendable (ConformanceEnvironment) throws -> Void

    public init(_ name: String, run: @escaping @Sendable (ConformanceEnvironment) throws -> Void) {
        self.name = name
        self.run = run
    }
}
