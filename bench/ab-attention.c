/* Same-process A/B timing of two C attention kernels of one op and shape (bench/ab.ts builds it).
 * Kernel A is emitted with the symbol kgen_ab_a (a/kernel.h), kernel B with kgen_ab_b (b/kernel.h);
 * both read the same Q and the same copies of K and V, so what differs is the kernel alone.
 *
 *   ab DIR WARMUP ROUNDS CALLS COPIES THREADS [SLACK]
 *
 * First each kernel computes O once on one thread, written to DIR/y_a.bin and DIR/y_b.bin (the
 * caller checks both against the reference; ROUNDS 0 stops there, before any copy is made). Then WARMUP calls of each, and ROUNDS rounds; a round
 * times CALLS calls of A, CALLS of B and CALLS plain reads of the cache (kg_read_range, the same
 * threads and copies: the memory's speed at that moment), interleaved call by call. Every call
 * takes the next of COPIES copies of the cache, so where the copies exceed the caches each call
 * streams it from DRAM (COPIES prime to 6: then A, B and the read each read every copy equally
 * often, whatever order the triple takes). One JSON line per round:
 * {"round":r,"dropped":n,"a_ms":[...],"b_ms":[...],"read_ms":[...]} (sorted times; dropped: SLACK below).
 *
 * SLACK (default 0: off) keeps only undisturbed calls: a call counts where its wall time exceeds
 * the largest CPU time one thread spent on its share (CLOCK_THREAD_CPUTIME_ID, taken around each
 * phase) by at most SLACK of the wall time; a call where a thread was descheduled, or woke late,
 * is dropped. A round then runs triples until each of the three has CALLS undisturbed calls, or
 * KG_TRIES_PER_CALL x CALLS triples have run, and its line adds "dropped": the calls left out.
 * Why: on a 2-vCPU VM shared with other work, two-thread calls wait for the other vCPU in whole
 * scheduler ticks (4 ms), and every median reads 16.00 ms for both kernels.
 *
 * Why one process: on a 2-vCPU VM a process keeps a fast or a slow memory mode for its whole life,
 * so two kernels timed in two processes differ by as much as the modes do; alternated in one
 * process they see the same mode (docs/PERFORMANCE.md, "Twenty-first session"). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "a/kernel.h"
#include "b/kernel.h"
#include "harness_io.h"
#include "read_probe.h"

_Static_assert(KGEN_AB_A_KV_BYTES == KGEN_AB_B_KV_BYTES && KGEN_AB_A_KV_SCALE_BYTES == KGEN_AB_B_KV_SCALE_BYTES,
               "A and B must read the same KV cache");
_Static_assert(KGEN_AB_A_HQ * KGEN_AB_A_SQ * KGEN_AB_A_D * KGEN_AB_A_B == KGEN_AB_B_HQ * KGEN_AB_B_SQ * KGEN_AB_B_D * KGEN_AB_B_B,
               "A and B must have the same shape");

/* From the caller: bytes of one Q and one O element (f16 or f32, the op's q and o types), and
 * kgen's harness exit codes (src/backends/harness.ts HARNESS_EXIT; harness_io.h's are printed in). */
#if !defined(KG_Q_BYTES) || !defined(KG_O_BYTES) || !defined(KG_EXIT_USAGE) || !defined(KG_EXIT_OUTPUT) || !defined(KG_EXIT_OUT_OF_MEMORY)
#error "define KG_Q_BYTES, KG_O_BYTES, KG_EXIT_USAGE, KG_EXIT_OUTPUT and KG_EXIT_OUT_OF_MEMORY"
#endif
#define KG_ELEMS ((size_t)KGEN_AB_A_B * KGEN_AB_A_HQ * KGEN_AB_A_SQ * KGEN_AB_A_D)
#define KG_KV_BYTES ((size_t)KGEN_AB_A_KV_BYTES)
#define KG_SCALE_BYTES ((size_t)KGEN_AB_A_KV_SCALE_BYTES)
#define KG_MAX_THREADS 256
/* With SLACK: the most triples a round runs, per call it wants of each kind. */
#define KG_TRIES_PER_CALL 20

/* One kernel's entry points and units of work, called through pointers so both run the same loop. */
typedef struct {
  void (*prepare)(const void *q, void *ws);
  void (*tasks)(void *ws, const uint8_t *k, const uint16_t *ks, const uint8_t *v, const uint16_t *vs, void *o, int64_t b, int64_t e);
  void (*merge)(const void *ws, void *o, int64_t b, int64_t e);
  int64_t tasks_n, rows_n;
  void *ws;
} kg_kernel;

static void a_prepare(const void *q, void *ws) { kgen_ab_a_prepare(q, ws); }
/* A kernel with a run-time KV length (its header defines _KV_LEN_MIN) is called at its capacity, Skv. */
#ifdef KGEN_AB_A_KV_LEN_MIN
static void a_tasks(void *ws, const uint8_t *k, const uint16_t *ks, const uint8_t *v, const uint16_t *vs, void *o, int64_t b, int64_t e) { (void)kgen_ab_a_tasks(ws, k, ks, v, vs, o, b, e, KGEN_AB_A_SKV); }
#else
static void a_tasks(void *ws, const uint8_t *k, const uint16_t *ks, const uint8_t *v, const uint16_t *vs, void *o, int64_t b, int64_t e) { kgen_ab_a_tasks(ws, k, ks, v, vs, o, b, e); }
#endif
static void a_merge(const void *ws, void *o, int64_t b, int64_t e) { kgen_ab_a_merge(ws, o, b, e); }
static void b_prepare(const void *q, void *ws) { kgen_ab_b_prepare(q, ws); }
#ifdef KGEN_AB_B_KV_LEN_MIN
static void b_tasks(void *ws, const uint8_t *k, const uint16_t *ks, const uint8_t *v, const uint16_t *vs, void *o, int64_t b, int64_t e) { (void)kgen_ab_b_tasks(ws, k, ks, v, vs, o, b, e, KGEN_AB_B_SKV); }
#else
static void b_tasks(void *ws, const uint8_t *k, const uint16_t *ks, const uint8_t *v, const uint16_t *vs, void *o, int64_t b, int64_t e) { kgen_ab_b_tasks(ws, k, ks, v, vs, o, b, e); }
#endif
static void b_merge(const void *ws, void *o, int64_t b, int64_t e) { kgen_ab_b_merge(ws, o, b, e); }

static void write_output(const char *dir, const char *name, const void *o) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(o, KG_O_BYTES, KG_ELEMS, f) != KG_ELEMS) { fprintf(stderr, "ab: cannot write %s\n", path); exit(KG_EXIT_OUTPUT); }
  fclose(f);
}

/* Persistent threads spinning on a generation counter (as the kgen harness's): each generation runs
 * one phase split over the threads: a kernel's tasks, its merge, or the plain read. */
enum { KG_PHASE_TASKS, KG_PHASE_MERGE, KG_PHASE_READ };
static struct {
  int nthreads, phase;
  const kg_kernel *kernel;
  const uint8_t *k, *v;
  const uint16_t *ks, *vs;
  void *o;
  _Atomic unsigned long generation;
  _Atomic int done, quit;
  volatile uint64_t sink[KG_MAX_THREADS];
  /* CPU ms each thread spent in its shares since the call began (with SLACK). */
  double cpu[KG_MAX_THREADS];
} pool;

static double thread_cpu_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Thread t's contiguous share of [base, base + bytes), its bounds on cache lines. */
static uint64_t read_share(const void *base, size_t bytes, int t) {
  if (!base || !bytes) return 0;
  const size_t per = ((bytes + (size_t)pool.nthreads - 1) / (size_t)pool.nthreads + KG_PROBE_LINE - 1) / KG_PROBE_LINE * KG_PROBE_LINE;
  const size_t begin = per * (size_t)t < bytes ? per * (size_t)t : bytes, end = begin + per < bytes ? begin + per : bytes;
  return kg_read_range((const uint8_t *)base + begin, end - begin);
}

static void pool_part_timed(int t);
static void pool_part(int t) {
  const double c0 = thread_cpu_ms();
  pool_part_timed(t);
  pool.cpu[t] += thread_cpu_ms() - c0;
}

static void pool_part_timed(int t) {
  if (pool.phase == KG_PHASE_READ) {
    pool.sink[t] ^= read_share(pool.k, KG_KV_BYTES, t) ^ read_share(pool.v, KG_KV_BYTES, t) ^ read_share(pool.ks, KG_SCALE_BYTES, t) ^
                    read_share(pool.vs, KG_SCALE_BYTES, t);
    return;
  }
  const kg_kernel *x = pool.kernel;
  const int64_t units = pool.phase == KG_PHASE_TASKS ? x->tasks_n : x->rows_n;
  const int64_t per = (units + pool.nthreads - 1) / pool.nthreads;
  const int64_t begin = t * per, end = begin + per < units ? begin + per : units;
  if (begin >= end) return;
  if (pool.phase == KG_PHASE_TASKS) x->tasks(x->ws, pool.k, pool.ks, pool.v, pool.vs, pool.o, begin, end);
  else x->merge(x->ws, pool.o, begin, end);
}

static void *pool_worker(void *arg) {
  const int t = (int)(intptr_t)arg;
  unsigned long seen = 0;
  for (;;) {
    unsigned long g;
    while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen)
      if (atomic_load_explicit(&pool.quit, memory_order_relaxed)) return NULL;
    seen = g;
    pool_part(t);
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
  }
}

static void pool_run(int phase) {
  pool.phase = phase;
  atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  pool_part(0);
  while (atomic_load_explicit(&pool.done, memory_order_acquire) != pool.nthreads - 1) {
  }
}

int main(int argc, char **argv) {
  if (argc != 7 && argc != 8) { fprintf(stderr, "usage: ab DIR WARMUP ROUNDS CALLS COPIES THREADS [SLACK]\n"); return KG_EXIT_USAGE; }
  const char *dir = argv[1];
  const int warmup = atoi(argv[2]), rounds = atoi(argv[3]), calls = atoi(argv[4]), copies = atoi(argv[5]), threads = atoi(argv[6]);
  const double slack = argc == 8 ? atof(argv[7]) : 0.0;
  if (slack < 0.0 || warmup < 0 || rounds < 0 || calls < 1 || copies < 1 || threads < 1 || threads > KG_MAX_THREADS) { fprintf(stderr, "ab: bad arguments\n"); return KG_EXIT_USAGE; }
  const void *q = read_file(dir, "q.bin", KG_Q_BYTES * KG_ELEMS);
  uint8_t **kc = kg_alloc(sizeof *kc * (size_t)copies, "the K copy table"), **vc = kg_alloc(sizeof *vc * (size_t)copies, "the V copy table");
  uint16_t **ksc = kg_alloc(sizeof *ksc * (size_t)copies, "the K scale copy table"), **vsc = kg_alloc(sizeof *vsc * (size_t)copies, "the V scale copy table");
  kc[0] = read_file(dir, "k.bin", KG_KV_BYTES);
  vc[0] = read_file(dir, "v.bin", KG_KV_BYTES);
  ksc[0] = KG_SCALE_BYTES ? read_file(dir, "k_scales.bin", KG_SCALE_BYTES) : NULL;
  vsc[0] = KG_SCALE_BYTES ? read_file(dir, "v_scales.bin", KG_SCALE_BYTES) : NULL;
  kg_kernel kernels[2] = {
    { a_prepare, a_tasks, a_merge, KGEN_AB_A_TASKS, KGEN_AB_A_OUT_ROWS, kg_alloc(kgen_ab_a_workspace_size(), "A's workspace") },
    { b_prepare, b_tasks, b_merge, KGEN_AB_B_TASKS, KGEN_AB_B_OUT_ROWS, kg_alloc(kgen_ab_b_workspace_size(), "B's workspace") },
  };
  void *o = kg_alloc(KG_O_BYTES * KG_ELEMS, "o");

  /* The outputs, one thread, copy 0. */
  for (int x = 0; x < 2; x++) {
    const kg_kernel *kx = &kernels[x];
    memset(o, 0xff, KG_O_BYTES * KG_ELEMS); /* NaN in f16 and f32: a row left unwritten fails the check */
    kx->prepare(q, kx->ws);
    kx->tasks(kx->ws, kc[0], ksc[0], vc[0], vsc[0], o, 0, kx->tasks_n);
    kx->merge(kx->ws, o, 0, kx->rows_n);
    write_output(dir, x ? "y_b.bin" : "y_a.bin", o);
  }
  /* ROUNDS 0: the check alone (the caller times nothing before both outputs are right). */
  if (rounds == 0) return 0;
  for (int c = 1; c < copies; c++) {
    kc[c] = memcpy(kg_alloc(KG_KV_BYTES, "a K copy"), kc[0], KG_KV_BYTES);
    vc[c] = memcpy(kg_alloc(KG_KV_BYTES, "a V copy"), vc[0], KG_KV_BYTES);
    ksc[c] = KG_SCALE_BYTES ? memcpy(kg_alloc(KG_SCALE_BYTES, "a K scale copy"), ksc[0], KG_SCALE_BYTES) : NULL;
    vsc[c] = KG_SCALE_BYTES ? memcpy(kg_alloc(KG_SCALE_BYTES, "a V scale copy"), vsc[0], KG_SCALE_BYTES) : NULL;
  }

  pool.nthreads = threads;
  pool.o = o;
  pthread_t th[KG_MAX_THREADS];
  for (int t = 1; t < threads; t++)
    if (pthread_create(&th[t], NULL, pool_worker, (void *)(intptr_t)t) != 0) { fprintf(stderr, "ab: cannot start thread %d\n", t); return KG_EXIT_OUT_OF_MEMORY; }
  double *times = kg_alloc(sizeof *times * 3 * (size_t)calls, "the times");
  /* Round -1 is the warmup (WARMUP calls of each, not printed). A round is CALLS triples of one call
   * of A, one of B and one read, each triple in the next of the six orders: the three share every
   * stretch of time, and none always follows the same one. */
  static const int orders[6][3] = { { 0, 1, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 0, 2, 1 }, { 2, 1, 0 }, { 1, 0, 2 } };
  int copy = 0, triple = 0;
  for (int round = -1; round < rounds; round++) {
    const int n = round < 0 ? warmup : slack > 0.0 ? KG_TRIES_PER_CALL * calls : calls;
    int kept[3] = { 0, 0, 0 }, dropped = 0;
    for (int i = 0; i < n && (round < 0 || kept[0] < calls || kept[1] < calls || kept[2] < calls); i++, triple++) {
      for (int slot = 0; slot < 3; slot++, copy = (copy + 1) % copies) {
        const int what = orders[triple % 6][slot]; /* 0: A, 1: B, 2: the read */
        pool.k = kc[copy];
        pool.v = vc[copy];
        pool.ks = ksc[copy];
        pool.vs = vsc[copy];
        for (int t = 0; t < threads; t++) pool.cpu[t] = 0.0;
        const double t0 = now_ms();
        if (what == 2) {
          pool_run(KG_PHASE_READ);
        } else {
          pool.kernel = &kernels[what];
          kernels[what].prepare(q, kernels[what].ws);
          pool_run(KG_PHASE_TASKS);
          pool_run(KG_PHASE_MERGE);
        }
        const double wall = now_ms() - t0;
        double busiest = 0.0;
        for (int t = 0; t < threads; t++) busiest = pool.cpu[t] > busiest ? pool.cpu[t] : busiest;
        if (round < 0 || kept[what] == calls) continue;
        if (slack > 0.0 && wall - busiest > slack * wall) dropped++;
        else times[what * calls + kept[what]++] = wall;
      }
    }
    if (round < 0) continue;
    printf("{\"round\":%d,\"dropped\":%d", round, dropped);
    static const char *const names[3] = { "a_ms", "b_ms", "read_ms" };
    for (int what = 0; what < 3; what++) {
      qsort(times + what * calls, (size_t)kept[what], sizeof *times, cmp_double);
      printf(",\"%s\":[", names[what]);
      for (int i = 0; i < kept[what]; i++) printf("%s%.6f", i ? "," : "", times[what * calls + i]);
      printf("]");
    }
    printf("}\n");
    fflush(stdout);
  }
  atomic_store(&pool.quit, 1);
  for (int t = 1; t < threads; t++) pthread_join(th[t], NULL);
  uint64_t sink = 0;
  for (int t = 0; t < threads; t++) sink ^= pool.sink[t];
  printf("{\"read_bytes\":%zu,\"sink\":%u}\n", 2 * (KG_KV_BYTES + KG_SCALE_BYTES), (unsigned)(sink & 0xff));
  for (int c = 0; c < copies; c++) {
    free(kc[c]);
    free(vc[c]);
    free(ksc[c]);
    free(vsc[c]);
  }
  free(kc); free(vc); free(ksc); free(vsc); free(times); free(o); free((void *)q);
  free(kernels[0].ws); free(kernels[1].ws);
  return 0;
}
