/// A region's content fingerprint for switchover verification: both sides compute it over
/// their copy and the destination compares.
///
/// The region is cut into 1 MiB chunks (or pages, if larger); chunk c hashes to
/// XXH3-64(chunk, seed: c), and the digest is XXH3-64 over the chunk hashes (little-endian),
/// seeded with the region length. Chunks make the digest parallel (each thread takes a share) and let a
/// mismatch be narrowed to a chunk with `chunkHashes`.
public struct RegionDigest: Hashable, Codable, Sendable, CustomStringConvertible {
    public static let algorithm = "xxh3-chunked-1MiB"
    public static let chunkSize = 1 << 20

    public var regionID: UInt32
    public var length: UInt64
    public var value: UInt64

    public init(regionID: UInt32, length: UInt64, value: UInt64) {
        self.regionID = regionID
        self.length = length
        self.value = value
    }

    /// Combines chunk hashes (in chunk order) into the digest.
    public static func combine(regionID: UInt32, length: UInt64, chunkHashes: [UInt64]) -> RegionDigest {
        let bytes = chunkHashes.flatMap { hash in (0..<8).map { UInt8(truncatingIfNeeded: hash >> (8 * $0)) } }
        return RegionDigest(regionID: regionID, length: length, value: XXH3.hash(bytes, seed: length))
    }

    enum CodingKeys: String, CodingKey {
        case regionID = "region"
        case length
        case value = "xxh3"
    }

    public var description: String {
        "region \(regionID) \(ByteCountText.text(length)) \(RegionDigest.algorithm) 0x\(String(value, radix: 16))"
    }
}
