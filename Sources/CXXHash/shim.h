// Debian's libxxhash (libxxhash-dev): XXH3-64 for rdmig's chunk digests. Linked, not
// inlined (no XXH_INLINE_ALL), so the hashing runs the library's optimized code even in a
// debug build of rdmig. On x86-64 the package also builds xxh_x86dispatch, whose *_dispatch
// entry points pick AVX2/AVX-512 code at run time where the plain ones are the baseline (SSE2)
// build; rdmig calls them by name (XXH3.swift; measured in Perf/README.md, "Chunk digests").
#include <xxhash.h>
#if defined(__x86_64__)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#endif
