/// The version of rdmig's wire protocol: channel setup, control frames and the migration
/// message catalogue together. Both ends must speak the same version; there is no
/// negotiation downwards, so a mismatch is reported and the migration does not start.
///
/// v3: chunk digests are XXH3-64 (libxxhash), DIGESTS says `xxh3ChunkTable` (v2 used XXH64);
/// page channels: LAYOUT and WINDOWS carry the channel count, JOIN binds a connection to a
/// migration as one of its page channels.
public enum RdmigProtocol {
    public static let version: UInt16 = 3
}
