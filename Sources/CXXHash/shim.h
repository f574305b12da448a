// Debian's libxxhash (libxxhash-dev): XXH3-64 for rdmig's chunk digests. Linked, not
// inlined (no XXH_INLINE_ALL), so the hashing runs the library's optimized code even in a
// debug build of rdmig.
#include <xxhash.h>
