// Hashes a buffer of guest-like pages page by page, seeded as rdmig's chunk digests are, with
// the old hand-written XXH64 (xxh64-reference.c), with Debian's libxxhash XXH3-64 as built
// (baseline x86-64: SSE2) and with its runtime-dispatched XXH3-64 (xxh_x86dispatch: AVX2 or
// AVX-512 where the CPU has them), taking turns in one process so all see the same machine.
// One thread: the figures are per core. Run by Perf/digest-bench.sh.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#include <immintrin.h>

// libxxhash 0.8.1's AVX2 entry points return with the upper YMM halves dirty (no vzeroupper):
// legacy-SSE code run after them on the same thread (the baseline XXH3 here) then ran ~3x
// slower on this host. So each pass starts with them cleared, and the dispatched pass clears
// them after every page, as rdmig does (XXH3.swift, rdmig_clear_upper_vector_halves).
__attribute__((target("avx"))) static void clear_upper_halves(void) { _mm256_zeroupper(); }

uint64_t rdmig_xxh64(const void *input, size_t length, uint64_t seed);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t bytes = argc > 1 ? strtoull(argv[1], NULL, 0) : (size_t)1 << 30;
    size_t page = argc > 2 ? strtoull(argv[2], NULL, 0) : 4096;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;
    if (page == 0 || bytes < page || rounds < 1 || rounds > 64) {
        fprintf(stderr, "usage: digest-bench [bytes] [page-size] [rounds 1-64]\n");
        return 2;
    }
    bytes -= bytes % page;
    uint8_t *memory = malloc(bytes);
    if (!memory) { perror("malloc"); return 1; }
    // Non-zero, varying content, written before the first timed pass so no pass pays faults.
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    for (size_t offset = 0; offset < bytes; offset += 8) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        memcpy(memory + offset, &state, 8);
    }
    const uint64_t seed = 0x5EED5EED12345678ULL;
    size_t pages = bytes / page;
    int avx = __builtin_cpu_supports("avx");
    static const char *names[3] = {"xxh64", "xxh3", "xxh3-dispatch"};
    double rates[3][64];
    uint64_t sink = 0;
    for (int round = 0; round < rounds; round++) {
        // Which one goes first rotates per round.
        for (int turn = 0; turn < 3; turn++) {
            int kind = (round + turn) % 3;
            if (avx) clear_upper_halves();
            double start = now();
            for (size_t index = 0; index < pages; index++) {
                const uint8_t *p = memory + index * page;
                if (kind == 0) {
                    sink += rdmig_xxh64(p, page, seed);
                } else if (kind == 1) {
                    sink += XXH3_64bits_withSeed(p, page, seed);
                } else {
                    sink += XXH3_64bits_withSeed_dispatch(p, page, seed);
                    if (avx) clear_upper_halves();
                }
            }
            rates[kind][round] = (double)bytes / (now() - start) / 1e9;
        }
        printf("round %d: xxh64 %.2f GB/s, xxh3 %.2f GB/s, xxh3-dispatch %.2f GB/s\n", round + 1,
               rates[0][round], rates[1][round], rates[2][round]);
    }
    // Why rdmig clears the upper halves: the baseline XXH3 pass timed right after a dispatched
    // pass that did not clear them, then again after clearing them.
    if (avx) {
        double dirty = 0, clean = 0;
        for (int repeat = 0; repeat < 2; repeat++) {
            for (size_t index = 0; index < pages; index++) sink += XXH3_64bits_withSeed_dispatch(memory + index * page, page, seed);
            double start = now();
            for (size_t index = 0; index < pages; index++) sink += XXH3_64bits_withSeed(memory + index * page, page, seed);
            if (repeat == 0) dirty = (double)bytes / (now() - start) / 1e9;
            clear_upper_halves();
            start = now();
            for (size_t index = 0; index < pages; index++) sink += XXH3_64bits_withSeed(memory + index * page, page, seed);
            if (repeat == 0) clean = (double)bytes / (now() - start) / 1e9;
        }
        printf("baseline xxh3 after a dispatched pass: %.2f GB/s with the upper halves left dirty, %.2f GB/s cleared\n", dirty, clean);
    }
    double median[3];
    for (int kind = 0; kind < 3; kind++) {
        qsort(rates[kind], rounds, sizeof(double), compare);
        median[kind] = rates[kind][rounds / 2];
    }
    printf("{\"bytes\": %zu, \"page\": %zu, \"rounds\": %d, \"libxxhash\": %u", bytes, page, rounds, XXH_versionNumber());
    for (int kind = 0; kind < 3; kind++) printf(", \"%s_gbps_median\": %.3f", names[kind], median[kind]);
    printf(", \"xxh3_over_xxh64\": %.3f, \"xxh3_dispatch_over_xxh64\": %.3f, \"sink\": %llu}\n",
           median[1] / median[0], median[2] / median[0], (unsigned long long)(sink & 1));
    free(memory);
    return 0;
}
