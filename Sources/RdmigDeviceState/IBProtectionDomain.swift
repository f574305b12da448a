/// A protection domain; MRs, QPs and SRQs name theirs by `pdn`.
public struct IBProtectionDomain: Equatable, Sendable, IBStateObject {
    public var pdn: UInt32

    static let kind = IBObjectKind.protectionDomain
    static let bodySize = 4
    static let empty = IBProtectionDomain(pdn: 0)

    public init(pdn: UInt32) { self.pdn = pdn }

    func encode(into writer: inout ByteWriter) { writer.u32(pdn) }

    init(decoding reader: inout ByteReader) throws(IBFieldError) { pdn = reader.u32() }

    var label: String { "pd \(hex(pdn))" }
}
