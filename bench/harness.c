/*
 * Throughput harness for one emitted kgen matmul kernel (bench/run.ts builds and drives it).
 *
 *   gcc <the variant's flags, e.g. -O3 -std=c11 -mavx2 -mfma -mf16c> -pthread -I<kernel dir> \
 *       -DKGEN_FN=kgen_matmul_q4 bench/harness.c <kernel dir>/kernel.c -o harness -lm
 * (bench/kgen-rows.ts takes them from C_TOOLCHAINS, so an AVX2 row is AVX2 code on any CPU.)
 *   ./harness <data dir> M N K rowBytes copies warmup runs probe threads...
 *
 * <data dir>/x.bin holds X[M,K] (f32), <data dir>/w.bin the packed W (N * rowBytes bytes). The
 * harness makes `copies` distinct copies of W (run.ts picks enough to exceed 3x the L3 cache) and
 * rotates through them, one per call, so every call streams its weights from DRAM.
 *
 * One timed call is what a user of the C ABI does per matmul: `_prepare(x, ws)` on the calling
 * thread, then `_rows` over [0, N) split into T contiguous ranges run by T threads (the caller is
 * thread 0; T-1 workers are kept alive across calls in a spin-wait pool, as inference engines do),
 * then wait for all of them. Timed with CLOCK_MONOTONIC around the whole call; `warmup` untimed
 * calls, then `runs` timed ones. Per thread count it prints one JSON line with the median, and
 * whether Y matched the first thread count's Y bit for bit (row splits must not change results).
 * With probe = 1 it also times as many plain reads of the same weight copies by the same threads
 * (kg_read_range from read_probe.h, which run.ts renders from templates/c/read_probe.hbs), in
 * rounds of `copies` that alternate with the calls' rounds: the read speed of the very pages the
 * kernel streams, at the same moments (the line's probe_median_ms).
 * It writes Y of the first call of the first thread count to <data dir>/y.bin for run.ts to check
 * against the JS reference.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernel.h"
#include "read_probe.h"

#ifndef KGEN_FN
#error "compile with -DKGEN_FN=kgen_<op name>"
#endif
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FN_WORKSPACE_SIZE CAT(KGEN_FN, _workspace_size)
#define FN_PREPARE CAT(KGEN_FN, _prepare)
#define FN_ROWS CAT(KGEN_FN, _rows)

#define MAX_THREADS 64

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *read_file(const char *dir, const char *name, size_t expect) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "harness: cannot open %s\n", path);
    exit(1);
  }
  void *buf = aligned_alloc(64, (expect + 63) & ~(size_t)63);
  if (!buf || fread(buf, 1, expect, f) != expect) {
    fprintf(stderr, "harness: %s is shorter than %zu bytes\n", path, expect);
    exit(1);
  }
  fclose(f);
  return buf;
}

/* ---- the pool: T-1 workers spin on a generation counter; the caller runs range 0 ---- */

typedef struct {
  int nthreads;
  int64_t N;
  const void *ws;
  const uint8_t *w; /* weights of the current call */
  float *y;
  int probing; /* this generation reads w plainly instead of calling the kernel */
  size_t wbytes;
  volatile uint64_t sink[MAX_THREADS];
  _Atomic uint64_t generation;
  _Atomic int done;
  _Atomic int quit;
} Pool;

static Pool pool;

static void row_range(int tid, int nthreads, int64_t N, int64_t *b, int64_t *e) {
  /* Contiguous ranges, multiples of 64 rows where possible (kernels tile rows). */
  int64_t chunk = (N + nthreads - 1) / nthreads;
  chunk = (chunk + 63) / 64 * 64;
  *b = chunk * tid < N ? chunk * tid : N;
  *e = chunk * (tid + 1) < N ? chunk * (tid + 1) : N;
}

static void do_rows(int tid) {
  if (pool.probing) {
    /* Thread tid's contiguous share of the copy, its bounds on cache lines. */
    size_t per = ((pool.wbytes + pool.nthreads - 1) / pool.nthreads + 63) / 64 * 64;
    size_t b = per * tid < pool.wbytes ? per * tid : pool.wbytes, e = b + per < pool.wbytes ? b + per : pool.wbytes;
    pool.sink[tid] ^= kg_read_range(pool.w + b, e - b);
    return;
  }
  int64_t b, e;
  row_range(tid, pool.nthreads, pool.N, &b, &e);
  if (b < e) FN_ROWS(pool.ws, pool.w, NULL, NULL, pool.y, b, e);
}

static void *worker(void *arg) {
  int tid = (int)(intptr_t)arg;
  uint64_t seen = 0;
  for (;;) {
    uint64_t g;
    while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
      if (atomic_load_explicit(&pool.quit, memory_order_relaxed)) return NULL;
      _mm_pause();
    }
    seen = g;
    do_rows(tid);
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
  }
}

static double one_call(const float *x, void *ws, const uint8_t *w, float *y, int probing) {
  double t0 = now_s();
  pool.probing = probing;
  if (!probing) FN_PREPARE(x, ws);
  pool.w = w;
  pool.y = y;
  pool.ws = ws;
  atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  do_rows(0);
  while (atomic_load_explicit(&pool.done, memory_order_acquire) != pool.nthreads - 1) _mm_pause();
  return now_s() - t0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 11) {
    fprintf(stderr, "usage: harness <data dir> M N K rowBytes copies warmup runs probe threads...\n");
    return 2;
  }
  const char *dir = argv[1];
  int64_t M = atoll(argv[2]), N = atoll(argv[3]), K = atoll(argv[4]), rowBytes = atoll(argv[5]);
  int copies = atoi(argv[6]), warmup = atoi(argv[7]), runs = atoi(argv[8]), probe = atoi(argv[9]);
  if (M <= 0 || N <= 0 || K <= 0 || rowBytes <= 0 || copies < 1 || warmup < 0 || runs < 1 || probe < 0 || probe > 1) {
    fprintf(stderr, "harness: bad arguments\n");
    return 2;
  }
  size_t wbytes = (size_t)(N * rowBytes);
  float *x = read_file(dir, "x.bin", (size_t)(M * K) * sizeof(float));
  uint8_t **w = calloc((size_t)copies, sizeof *w);
  w[0] = read_file(dir, "w.bin", wbytes);
  for (int c = 1; c < copies; c++) {
    w[c] = aligned_alloc(64, (wbytes + 63) & ~(size_t)63);
    if (!w[c]) {
      fprintf(stderr, "harness: out of memory for weight copy %d\n", c);
      return 1;
    }
    memcpy(w[c], w[0], wbytes);
  }
  size_t ws_bytes = FN_WORKSPACE_SIZE();
  void *ws = aligned_alloc(64, (ws_bytes + 63) / 64 * 64 + 64);
  size_t ybytes = (size_t)(M * N) * sizeof(float);
  float *y = aligned_alloc(64, (ybytes + 63) & ~(size_t)63);
  float *y_first = malloc(ybytes);
  double *times = calloc((size_t)runs, sizeof(double));
  double *probe_times = calloc((size_t)runs, sizeof(double));

  for (int a = 10; a < argc; a++) {
    int T = atoi(argv[a]);
    if (T < 1 || T > MAX_THREADS) {
      fprintf(stderr, "harness: bad thread count %d\n", T);
      return 2;
    }
    memset(&pool, 0, sizeof pool);
    pool.nthreads = T;
    pool.N = N;
    pool.wbytes = wbytes;
    pthread_t th[MAX_THREADS];
    for (int t = 1; t < T; t++) pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t);

    memset(y, 0xff, ybytes); /* NaNs: rows a kernel fails to write show up in the checks */
    one_call(x, ws, w[0], y, 0);
    int same = 1;
    if (a == 10) {
      memcpy(y_first, y, ybytes);
      char path[4096];
      snprintf(path, sizeof path, "%s/y.bin", dir);
      FILE *f = fopen(path, "wb");
      if (!f || fwrite(y, 1, ybytes, f) != ybytes) {
        fprintf(stderr, "harness: cannot write %s\n", path);
        return 1;
      }
      fclose(f);
    } else {
      same = memcmp(y, y_first, ybytes) == 0;
    }

    /* Rounds of `copies` calls, each on the next copy (the first on copy 1: copy 0 was just read);
     * with the probe, rounds of `copies` plain reads in between: both see the same pages, and
     * neither finds a copy still cached (the copies exceed 3x the L3). */
    int calls = 0, reads = 0;
    for (int round = 0; calls < warmup + runs || (probe && reads < warmup + runs); round++) {
      const int reading = probe && round % 2 == 1;
      for (int c = 0; c < copies; c++) {
        int *n = reading ? &reads : &calls;
        if (*n >= warmup + runs) break;
        double dt = one_call(x, ws, w[(c + 1) % copies], y, reading);
        if (*n >= warmup) (reading ? probe_times : times)[*n - warmup] = dt;
        ++*n;
      }
    }
    atomic_store(&pool.quit, 1);
    for (int t = 1; t < T; t++) pthread_join(th[t], NULL);

    double checksum = 0;
    for (int64_t i = 0; i < M * N; i++) checksum += y[i];
    qsort(times, (size_t)runs, sizeof(double), cmp_double);
    double median = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    printf("{\"threads\":%d,\"median_ms\":%.6f,\"min_ms\":%.6f,\"max_ms\":%.6f,\"runs\":%d,\"warmup\":%d,"
           "\"copies\":%d,\"weight_bytes\":%zu,\"workspace_bytes\":%zu,\"same_as_first\":%s,\"checksum\":%.9g",
           T, median * 1e3, times[0] * 1e3, times[runs - 1] * 1e3, runs, warmup, copies, wbytes, ws_bytes,
           same ? "true" : "false", checksum);
    if (probe) {
      uint64_t sink = 0;
      for (int t = 0; t < T; t++) sink ^= pool.sink[t];
      qsort(probe_times, (size_t)runs, sizeof(double), cmp_double);
      double pm = runs % 2 ? probe_times[runs / 2] : 0.5 * (probe_times[runs / 2 - 1] + probe_times[runs / 2]);
      printf(",\"probe_median_ms\":%.6f,\"probe_sink\":%u", pm * 1e3, (unsigned)(sink & 0xff));
    }
    printf("}\n");
    fflush(stdout);
  }
  return 0;
}
