import CRdmigShims
import CXXHash

/// XXH3-64, Yann Collet's non-cryptographic hash, from Debian's libxxhash (`libxxhash-dev`).
/// Chosen for chunk digests because verification guards against lost or torn pages, not
/// against an attacker (the peer is authenticated, DIGESTS travels under the control
/// channel's MAC, and the seed is a session secret), and it hashes 4 KiB pages at ~2.3× the
/// XXH64 rdmig used before protocol v3 (Perf/README.md, "Chunk digests").
///
/// The library is linked, not inlined, so a debug build of rdmig hashes at the library's
/// optimized speed: the multi-process tests run the debug binary, and hashing sits inside
/// the downtime. On x86-64 the calls go to libxxhash's run-time dispatched entry points (AVX2
/// here: ~1.3x its baseline SSE2 build), each followed by `rdmig_clear_upper_vector_halves`,
/// because that code returns with the upper YMM halves dirty and the legacy-SSE code after it
/// on the thread then runs ~3x slower (both measured: Perf/README.md, "Chunk digests").
public enum XXH3 {
    /// XXH3_64bits_withSeed of `count` bytes at `base`.
    @inline(__always)
    public static func hash(_ base: UnsafeRawPointer?, count: Int, seed: UInt64) -> UInt64 {
        #if arch(x86_64)
        let hash = XXH3_64bits_withSeed_dispatch(base, count, seed)
        rdmig_clear_upper_vector_halves()
        return hash
        #else
        return XXH3_64bits_withSeed(base, count, seed)
        #endif
    }

    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64) -> UInt64 {
        hash(bytes.baseAddress, count: bytes.count, seed: seed)
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }
}

/// An XXH3-64 streaming state: one hash fed in pieces (a chunk whose known-zero pages are
/// fed from a buffer of zeros instead of read from guest memory). The digest equals
/// `XXH3.hash` of the concatenated pieces with the same seed.
///
/// The state is allocated once (XXH3_createState: it is 64-byte aligned, which a Swift
/// stack value would not be) and reused with `reset`, so hashing allocates nothing.
public struct XXH3Stream: ~Copyable {
    private let state: OpaquePointer

    public init(seed: UInt64) {
        // XXH3_createState fails only when malloc does (a few hundred bytes).
        guard let state = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
        self.state = state
        reset(seed: seed)
    }

    deinit {
        XXH3_freeState(state)
    }

    /// Starts a new hash with `seed` (XXH3_64bits_reset_withSeed).
    public func reset(seed: UInt64) {
        // It fails only for a NULL state.
        _ = XXH3_64bits_reset_withSeed(state, seed)
    }

    /// Appends `count` bytes at `base` (XXH3_64bits_update).
    public func update(_ base: UnsafeRawPointer, count: Int) {
        // It fails only for a NULL input with a non-zero length.
        #if arch(x86_64)
        _ = XXH3_64bits_update_dispatch(state, base, count)
        rdmig_clear_upper_vector_halves()
        #else
        _ = XXH3_64bits_update(state, base, count)
        #endif
    }

    /// The hash of everything fed since the last reset; feeding may continue.
    public func digest() -> UInt64 {
        XXH3_64bits_digest(state)
    }
}
