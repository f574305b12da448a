import RdmigSystem

/// Sizes in messages: exact binary form ("1GiB") when it is one, else rounded ("1.50 GiB").
enum ByteCountText {
    static func text(_ bytes: UInt64) -> String {
        let exact = ByteCount(bytes).description
        return exact.hasSuffix("B") && !exact.hasSuffix("iB") && bytes >= 1024 ? ByteCount(bytes).humanReadable : exact
    }
}

extension ByteCountText {
    /// "12.00 MiB", "0 B".
    static func human(_ bytes: UInt64) -> String { ByteCount.humanReadable(Double(bytes)) }
}
