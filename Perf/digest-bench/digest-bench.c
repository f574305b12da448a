// Hashes a buffer of guest-like pages page by page, seeded as rdmig's chunk digests are, with
// the old hand-written XXH64 (xxh64-reference.c) and with Debian's libxxhash XXH3-64 (what
// ChunkDigester calls), alternating the two in one process so both see the same machine.
// One thread: the figures are per core. Run by Perf/digest-bench.sh.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

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
    double xxh64[64], xxh3[64];
    uint64_t sink = 0;
    for (int round = 0; round < rounds; round++) {
        // Which one goes first alternates per round.
        for (int turn = 0; turn < 2; turn++) {
            int useXXH3 = (round + turn) % 2;
            double start = now();
            for (size_t index = 0; index < pages; index++) {
                const uint8_t *p = memory + index * page;
                sink += useXXH3 ? XXH3_64bits_withSeed(p, page, seed) : rdmig_xxh64(p, page, seed);
            }
            double rate = (double)bytes / (now() - start) / 1e9;
            if (useXXH3) xxh3[round] = rate; else xxh64[round] = rate;
        }
        printf("round %d: xxh64 %.2f GB/s, xxh3 %.2f GB/s, ratio %.2f\n", round + 1, xxh64[round], xxh3[round],
               xxh3[round] / xxh64[round]);
    }
    qsort(xxh64, rounds, sizeof(double), compare);
    qsort(xxh3, rounds, sizeof(double), compare);
    double median64 = xxh64[rounds / 2], median3 = xxh3[rounds / 2];
    printf("{\"bytes\": %zu, \"page\": %zu, \"rounds\": %d, \"xxh64_gbps_median\": %.3f, \"xxh3_gbps_median\": %.3f, "
           "\"ratio_of_medians\": %.3f, \"libxxhash\": \"%u\", \"sink\": %llu}\n",
           bytes, page, rounds, median64, median3, median3 / median64, XXH_versionNumber(), (unsigned long long)(sink & 1));
    free(memory);
    return 0;
}
