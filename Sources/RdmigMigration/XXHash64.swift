import CRdmigShims
/// XXH64, Yann Collet's 64-bit non-cryptographic hash, written from its published
/// specification (github.com/Cyan4973/xxHash, doc/xxhash_spec.md). Chosen for region digests
/// because verification guards against lost or torn pages, not against an attacker (the peer
/// is authenticated before any window is exported), and XXH64 runs at memory bandwidth where
/// SHA-256 would cost seconds per GiB of downtime-critical time.
public enum XXHash64 {
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        rdmig_xxh64(bytes.baseAddress, bytes.count, seed)
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    /// The C implementation (CRdmigShims/xxh64.c) is compiled with -O2 in every build; a
    /// Swift one at -Onone hashed at ~0.4 GB/s, seconds inside a debug build's downtime.
    public static func hash(_ base: UnsafeRawPointer, count: Int, seed: UInt64 = 0) -> UInt64 {
        rdmig_xxh64(base, count, seed)
    }
}
