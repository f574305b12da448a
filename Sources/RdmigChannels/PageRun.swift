/// Contiguous pages `[firstPage, firstPage + count)` of one region, by page index.
public struct PageRun: Hashable, Sendable, CustomStringConvertible {
    public var firstPage: UInt64
    public var count: UInt64

    public init(firstPage: UInt64, count: UInt64) {
        self.firstPage = firstPage
        self.count = count
    }

    /// One past the last page.
    public var endPage: UInt64 { firstPage &+ count }

    public var description: String { count == 1 ? "page \(firstPage)" : "pages \(firstPage)..<\(endPage)" }
}

extension PageRun: WireCodable {
    public static let minimumEncodedSize = 16

    public func encode(to writer: inout WireWriter) throws(WireError) {
        try writer.write(firstPage, "runs.firstPage")
        try writer.write(count, "runs.count")
    }

    public init(from reader: inout WireReader) throws(WireError) {
        firstPage = try reader.readUInt64("runs.firstPage")
        count = try reader.readUInt64("runs.count")
        guard firstPage.addingReportingOverflow(count).overflow == false else {
            throw .invalidValue(message: reader.messageName, field: "runs.count",
                                detail: "run of \(count) pages from page \(firstPage) overflows 64 bits")
        }
    }
}
