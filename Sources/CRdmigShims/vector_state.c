// Clearing the upper halves of the YMM registers after libxxhash's run-time dispatched XXH3
// (Perf/README.md, "Chunk digests"): Debian's libxxhash 0.8.1 returns from its AVX2 code
// without VZEROUPPER, and legacy-SSE code run afterwards on the same thread (Swift's and most
// C code built for baseline x86-64) then ran ~3x slower on this host. Swift cannot emit the
// instruction, and it faults where AVX is absent or not enabled by the OS, hence the check.
#include "CRdmigShims.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

__attribute__((target("avx"))) static void zero_upper_halves(void) { _mm256_zeroupper(); }

// CPUID.1:ECX.AVX and OSXSAVE, and the OS saving the YMM state (XCR0 bits 1 and 2).
static int avx_usable(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (!(ecx & bit_OSXSAVE) || !(ecx & bit_AVX)) return 0;
    unsigned int low, high;
    __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
    return (low & 6) == 6;
}

// -1 until the first call looks; threads that race to look all find the same answer.
static int avx_state = -1;

void rdmig_clear_upper_vector_halves(void) {
    int state = __atomic_load_n(&avx_state, __ATOMIC_RELAXED);
    if (state < 0) {
        state = avx_usable();
        __atomic_store_n(&avx_state, state, __ATOMIC_RELAXED);
    }
    if (state) zero_upper_halves();
}
#else
void rdmig_clear_upper_vector_halves(void) {}
#endif
