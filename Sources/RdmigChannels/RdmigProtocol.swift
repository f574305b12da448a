/// The version of rdmig's wire protocol: channel setup, control frames and the migration
/// message catalogue together. Both ends must speak the same version; there is no
/// negotiation downwards, so a mismatch is reported and the migration does not start.
public enum RdmigProtocol {
    public static let version: UInt16 = 3
}
