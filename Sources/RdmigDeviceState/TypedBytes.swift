extension Array where Element == UInt8 {
    /// `withUnsafeBytes` that keeps a typed error: Array's own is `rethrows`, which widens
    /// typed throws to `any Error`.
    func withBytes<Result, Failure: Error>(
        _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let outcome: Swift.Result<Result, Failure> = withUnsafeBytes { raw in
            Swift.Result { () throws(Failure) -> Result in try body(raw) }
        }
        return try outcome.get()
    }
}
