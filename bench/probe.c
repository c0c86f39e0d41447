/*
 * Memory-bandwidth probe: how fast can T threads stream a buffer far larger than the L3 cache?
 *
 *   gcc -O3 -march=native -pthread bench/probe.c -o probe
 *   ./probe [MiB=1024] [passes=9] [threads...=1 2]
 *
 * Each thread reads its own contiguous 1/T of the buffer with 256-bit (AVX2) loads into eight
 * independent integer accumulators, so the loop is bound by loads, not by an add chain. Threads
 * stay alive across passes; a pass is timed on the main thread from the barrier that starts it to
 * the barrier that ends it. One untimed warm-up pass, then `passes` timed ones; prints one JSON
 * line per thread count with the median (and min/max) GB/s, GB = 1e9 bytes.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  const uint8_t *base;
  size_t bytes;
  int tid, nthreads, passes;
  pthread_barrier_t *start, *stop;
  volatile uint64_t sink;
} Worker;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t read_range(const uint8_t *p, size_t bytes) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  const uint8_t *end = p + bytes;
  for (; p + 256 <= end; p += 256) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + 0)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + 96)));
    a4 = _mm256_xor_si256(a4, _mm256_load_si256((const __m256i *)(p + 128)));
    a5 = _mm256_xor_si256(a5, _mm256_load_si256((const __m256i *)(p + 160)));
    a6 = _mm256_xor_si256(a6, _mm256_load_si256((const __m256i *)(p + 192)));
    a7 = _mm256_xor_si256(a7, _mm256_load_si256((const __m256i *)(p + 224)));
  }
  a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  a4 = _mm256_xor_si256(_mm256_xor_si256(a4, a5), _mm256_xor_si256(a6, a7));
  a0 = _mm256_xor_si256(a0, a4);
  return (uint64_t)_mm256_extract_epi64(a0, 0) ^ (uint64_t)_mm256_extract_epi64(a0, 3);
}

static void *worker_main(void *arg) {
  Worker *w = (Worker *)arg;
  size_t chunk = (w->bytes / (size_t)w->nthreads) & ~(size_t)255;
  const uint8_t *p = w->base + chunk * (size_t)w->tid;
  uint64_t acc = 0;
  for (int pass = 0; pass < w->passes + 1; pass++) {
    pthread_barrier_wait(w->start);
    acc ^= read_range(p, chunk);
    pthread_barrier_wait(w->stop);
  }
  w->sink = acc;
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void run(uint8_t *buf, size_t bytes, int nthreads, int passes) {
  pthread_barrier_t start, stop;
  pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
  pthread_barrier_init(&stop, NULL, (unsigned)nthreads + 1);
  Worker *ws = calloc((size_t)nthreads, sizeof(Worker));
  pthread_t *th = calloc((size_t)nthreads, sizeof(pthread_t));
  for (int t = 0; t < nthreads; t++) {
    ws[t] = (Worker){ .base = buf, .bytes = bytes, .tid = t, .nthreads = nthreads, .passes = passes,
                      .start = &start, .stop = &stop };
    pthread_create(&th[t], NULL, worker_main, &ws[t]);
  }
  size_t chunk = (bytes / (size_t)nthreads) & ~(size_t)255;
  double read_bytes = (double)chunk * nthreads;
  double *gbps = calloc((size_t)passes, sizeof(double));
  for (int pass = 0; pass < passes + 1; pass++) {
    pthread_barrier_wait(&start);
    double t0 = now_s();
    pthread_barrier_wait(&stop);
    double dt = now_s() - t0;
    if (pass > 0) gbps[pass - 1] = read_bytes / dt / 1e9;
    fprintf(stderr, "probe: %d thread(s) pass %d: %.2f GB/s%s\n", nthreads, pass, read_bytes / dt / 1e9,
            pass == 0 ? " (warm-up)" : "");
  }
  uint64_t sink = 0;
  for (int t = 0; t < nthreads; t++) {
    pthread_join(th[t], NULL);
    sink ^= ws[t].sink;
  }
  qsort(gbps, (size_t)passes, sizeof(double), cmp_double);
  double median = passes % 2 ? gbps[passes / 2] : 0.5 * (gbps[passes / 2 - 1] + gbps[passes / 2]);
  printf("{\"threads\":%d,\"bytes\":%.0f,\"passes\":%d,\"gbps\":%.3f,\"min_gbps\":%.3f,\"max_gbps\":%.3f,"
         "\"sink\":%llu}\n",
         nthreads, read_bytes, passes, median, gbps[0], gbps[passes - 1], (unsigned long long)(sink & 0xff));
  fflush(stdout);
  free(gbps);
  free(th);
  free(ws);
  pthread_barrier_destroy(&start);
  pthread_barrier_destroy(&stop);
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 1024;
  int passes = argc > 2 ? atoi(argv[2]) : 9;
  if (mib < 64 || passes < 1) {
    fprintf(stderr, "usage: probe [MiB>=64] [passes>=1] [threads...]\n");
    return 2;
  }
  size_t bytes = mib << 20;
  uint8_t *buf = aligned_alloc(2 << 20, bytes);
  if (!buf) {
    fprintf(stderr, "probe: cannot allocate %zu MiB\n", mib);
    return 1;
  }
  /* Touch every page (and give the bytes non-trivial values) so no pass pays for page faults. */
  for (size_t i = 0; i < bytes; i += 8) *(uint64_t *)(buf + i) = i * 0x9e3779b97f4a7c15ull;
  if (argc > 3) {
    for (int a = 3; a < argc; a++) run(buf, bytes, atoi(argv[a]), passes);
  } else {
    run(buf, bytes, 1, passes);
    run(buf, bytes, 2, passes);
  }
  free(buf);
  return 0;
}
