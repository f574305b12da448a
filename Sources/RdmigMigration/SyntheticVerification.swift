/// The result of checking a region against the synthetic guest's version table.
public struct SyntheticVerification: Sendable, Equatable, CustomStringConvertible {
    public var checkedPages: Int
    public var mismatchedPages: Int
    /// The first few pages that did not match (at most 16), for the error message.
    public var firstMismatches: [Int]

    public var isEqual: Bool { mismatchedPages == 0 }

    public var description: String {
        if isEqual { return "all \(checkedPages) pages match their versions" }
        return "\(mismatchedPages) of \(checkedPages) pages differ from their versions, first: "
            + firstMismatches.map(String.init).joined(separator: ", ")
    }
}
