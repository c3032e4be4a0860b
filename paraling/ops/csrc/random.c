#include <stdint.h>
#include <string.h>

/* Random bytes for dropout masks: word j of the stream is SplitMix64's output for counter j (Steele et al., 2014),
 * so blocks fill in parallel and the result depends only on the seed, not on the thread count. */
static inline uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void pl_random_bytes(uint8_t *out, int64_t n, uint64_t seed, int nthreads) {
    const int64_t words = n / 8, block = 4096;
    const uint64_t golden = 0x9e3779b97f4a7c15ULL;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t start = 0; start < words; start += block) {
        const int64_t end = start + block < words ? start + block : words;
        uint64_t *dst = (uint64_t *)out;
        for (int64_t j = start; j < end; j++) {
            uint64_t v = splitmix64(seed + (uint64_t)(j + 1) * golden);
            memcpy(dst + j, &v, sizeof v);
        }
    }
    if (n % 8) {
        uint64_t v = splitmix64(seed + (uint64_t)(words + 1) * golden);
        memcpy(out + words * 8, &v, (size_t)(n % 8));
    }
}
