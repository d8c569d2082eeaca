/* Latency and throughput of random cache-line reads in a buffer of a given size: the
 * machine property that bounds the blocked completion kernels (docs/benchmarks.rst,
 * "The random-access floor").
 *
 *     gcc -O2 -march=native -o /tmp/memory_latency benchmarks/memory_latency.c
 *     /tmp/memory_latency 1000000 4000000 10000000 40000000 200000000
 *
 * Per buffer size in bytes: the latency of one read (a pointer chase through the lines
 * in a random cyclic order: each read waits for the previous), and the time per line of
 * independent random reads without and with a software prefetch 32 reads ahead, and of
 * prefetched random read-modify-writes. Buffers are 2 MiB aligned with transparent huge
 * pages requested (madvise), as numpy does for large arrays.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static uint64_t state = 88172645463325252ull;
static uint64_t next_random(void) {  /* xorshift64 */
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static void measure(long bytes, long reads) {
    long lines = bytes / 64;
    size_t size = ((size_t)bytes + 2097151) / 2097152 * 2097152;
    char *buf = aligned_alloc(2097152, size);
    long *order = malloc(lines * sizeof(long));
    uint32_t *at = malloc(reads * sizeof(uint32_t));
    if (!buf || !order || !at) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    madvise(buf, size, MADV_HUGEPAGE);
    for (long i = 0; i < lines; i++) order[i] = i;
    for (long i = lines - 1; i > 0; i--) {  /* a random cyclic order of the lines */
        long j = (long)(next_random() % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (long i = 0; i < lines; i++)
        *(long *)(buf + order[i] * 64) = order[(i + 1) % lines] * 64;
    for (long i = 0; i < reads; i++) at[i] = (uint32_t)(next_random() % (uint64_t)lines);

    long p = 0, sum = 0;
    double t0 = seconds();
    for (long i = 0; i < reads; i++) p = *(long *)(buf + p);
    double latency = (seconds() - t0) / reads * 1e9;
    t0 = seconds();
    for (long i = 0; i < reads; i++) sum += *(long *)(buf + (long)at[i] * 64);
    double independent = (seconds() - t0) / reads * 1e9;
    t0 = seconds();
    for (long i = 0; i < reads; i++) {
        if (i + 32 < reads) __builtin_prefetch(buf + (long)at[i + 32] * 64);
        sum += *(long *)(buf + (long)at[i] * 64);
    }
    double prefetched = (seconds() - t0) / reads * 1e9;
    t0 = seconds();
    for (long i = 0; i < reads; i++) {
        if (i + 32 < reads) __builtin_prefetch(buf + (long)at[i + 32] * 64, 1);
        *(long *)(buf + (long)at[i] * 64) += 1;
    }
    double rmw = (seconds() - t0) / reads * 1e9;
    printf("%10ld bytes: latency %6.1f ns; random lines %5.2f ns each, prefetched %5.2f, "
           "prefetched read-modify-write %5.2f (%ld)\n",
           bytes, latency, independent, prefetched, rmw, (p + sum) & 1);
    free(buf);
    free(order);
    free(at);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s BYTES [BYTES ...]\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) measure(atol(argv[i]), 20000000L);
    return 0;
}
