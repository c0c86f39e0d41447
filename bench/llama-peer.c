/*
 * llama.cpp peer harness: one ggml_mul_mat, or one ggml_flash_attn_ext, on ggml's CPU backend,
 * through the prebuilt libraries of the `@node-llama-cpp/linux-x64` npm package (bench/llama-peer.ts
 * builds it and drives `run`; bench/llama-attention.ts drives `attn`).
 *
 *   gcc -O2 -Wall bench/llama-peer.c -o llama-peer -ldl -lm
 *   ./llama-peer list <lib dir>
 *   ./llama-peer run <lib dir> <cpu variant> <in dir> <out dir> q4_0|q8_0 M N K copies warmup runs threads...
 *   ./llama-peer attn <lib dir> <cpu variant> <in dir> <out dir> f16|q8_0|q4_0 Hq Hkv D Sq Skv causal copies warmup runs threads...
 *
 * No ggml header or library is needed to build it: the libraries are opened with dlopen at run time,
 * and the few ggml C API declarations it calls are written out below, as ggml 0.25.1 (llama.cpp
 * commit 0ad4a86, the build node-llama-cpp 3.22.1 ships) declares them in ggml.h, ggml-alloc.h,
 * ggml-backend.h and ggml-cpu.h. `list` prints the version the libraries report, and
 * bench/llama-peer.ts refuses any other.
 *
 * `list` prints one JSON line: ggml's version and commit, and for every libggml-cpu-<variant>.so in
 * the directory its ggml_backend_score() on this CPU (0: the CPU lacks an instruction the variant
 * was built with) and, where the score is not 0, the features it reports (AVX2, AVX512, REPACK...).
 *
 * `run` does what llama.cpp does with a weight matrix, on ggml's public API:
 *  - ggml_backend_load() of libggml-cpu-<variant>.so (ggml's own loader: it refuses a variant whose
 *    score is 0), the device's backend, a persistent ggml threadpool of T threads (default
 *    parameters, as llama.cpp's common code attaches one) and ggml_backend_set_n_threads(T);
 *  - W[N,K] from <in dir>/w.f32 quantized with ggml_quantize_chunk() (written to <out dir>/wq.bin for
 *    the bench to check), X[M,K] f32 from <in dir>/x.f32;
 *  - the weights' buffer type chosen as llama.cpp chooses it: the first of the CPU device's "extra"
 *    buffer types (ggml_backend_dev_get_extra_bufts: CPU_REPACK in these builds) on which the device
 *    supports this mul_mat, else the plain CPU buffer type. Setting a tensor in CPU_REPACK converts
 *    the blocks to the interleaved layout of ggml's repacked kernels; the harness reports whether
 *    the bytes in the buffer differ from the quantized ones (they do when the weights were repacked);
 *  - `copies` weight tensors (the bench picks enough to exceed 3x the L3), one graph Y_c =
 *    ggml_mul_mat(W_c, X) per copy; a call is ggml_backend_graph_compute() of the next graph, so
 *    every call streams its weights from DRAM. `warmup` untimed calls, then `runs` timed ones
 *    (CLOCK_MONOTONIC around the call); one JSON line per thread count with the median.
 * Y of the first call of the first thread count goes to <out dir>/y.bin; later thread counts report
 * whether their first Y matched it bit for bit.
 *
 * `attn` does what llama.cpp's attention does with flash attention on (build_attn_mha), on one
 * layer's KV cache: Q [Sq][Hq][D] f32 from <in dir>/q.f32, K and V [Skv][Hkv][D] f32 from k.f32 and
 * v.f32, stored by ggml_quantize_chunk() in the cache type as llama.cpp's cache holds them (one row
 * of Hkv*D values per position; written to <out dir>/k.bin and v.bin for the bench to check), in
 * `copies` caches in the CPU buffer; one ggml_flash_attn_ext graph per cache with the mask
 * llama.cpp builds (f16, -inf where causal hides a key), timed as `run` times its graphs. O
 * [Sq][Hq][D] f32 of the first call goes to <out dir>/o.bin.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

/* ---- ggml 0.25.1 C API: the declarations this harness calls (ggml.h, ggml-alloc.h, ggml-backend.h,
 * ggml-cpu.h). Tensors, contexts, graphs, buffers and backends stay opaque. ---- */

enum ggml_type { GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2, GGML_TYPE_Q8_0 = 8 };
enum ggml_prec { GGML_PREC_DEFAULT = 0, GGML_PREC_F32 = 10 };
enum ggml_status { GGML_STATUS_SUCCESS = 0 };
#define GGML_MAX_N_THREADS 512

struct ggml_init_params {
  size_t mem_size;
  void *mem_buffer;
  bool no_alloc;
};

enum ggml_sched_priority { GGML_SCHED_PRIO_LOW = -1, GGML_SCHED_PRIO_NORMAL };
struct ggml_threadpool_params {
  bool cpumask[GGML_MAX_N_THREADS];
  int n_threads;
  enum ggml_sched_priority prio;
  uint32_t poll;
  bool strict_cpu;
  bool paused;
};

struct ggml_backend_feature {
  const char *name;
  const char *value;
};

struct ggml_context;
struct ggml_tensor;
struct ggml_cgraph;
struct ggml_threadpool;
typedef struct ggml_backend_buffer_type *ggml_backend_buffer_type_t;
typedef struct ggml_backend_buffer *ggml_backend_buffer_t;
typedef struct ggml_backend *ggml_backend_t;
typedef struct ggml_backend_reg *ggml_backend_reg_t;
typedef struct ggml_backend_device *ggml_backend_dev_t;

/* Functions of libggml-base.so and libggml.so, resolved with dlsym into these pointers. */
#define GGML_FUNCTIONS(X)                                                                                        \
  X(base, const char *, ggml_version, (void))                                                                   \
  X(base, const char *, ggml_commit, (void))                                                                    \
  X(base, size_t, ggml_tensor_overhead, (void))                                                                 \
  X(base, size_t, ggml_graph_overhead, (void))                                                                  \
  X(base, struct ggml_context *, ggml_init, (struct ggml_init_params))                                          \
  X(base, void, ggml_free, (struct ggml_context *))                                                             \
  X(base, struct ggml_tensor *, ggml_new_tensor_2d, (struct ggml_context *, enum ggml_type, int64_t, int64_t))  \
  X(base, struct ggml_tensor *, ggml_new_tensor_3d,                                                           \
    (struct ggml_context *, enum ggml_type, int64_t, int64_t, int64_t))                                         \
  X(base, struct ggml_tensor *, ggml_view_3d,                                                                 \
    (struct ggml_context *, struct ggml_tensor *, int64_t, int64_t, int64_t, size_t, size_t, size_t))           \
  X(base, struct ggml_tensor *, ggml_permute, (struct ggml_context *, struct ggml_tensor *, int, int, int, int)) \
  X(base, struct ggml_tensor *, ggml_flash_attn_ext,                                                          \
    (struct ggml_context *, struct ggml_tensor *, struct ggml_tensor *, struct ggml_tensor *,                   \
     struct ggml_tensor *, float, float, float))                                                                \
  X(base, void, ggml_flash_attn_ext_set_prec, (struct ggml_tensor *, enum ggml_prec))                          \
  X(base, struct ggml_tensor *, ggml_mul_mat, (struct ggml_context *, struct ggml_tensor *, struct ggml_tensor *)) \
  X(base, struct ggml_cgraph *, ggml_new_graph, (struct ggml_context *))                                        \
  X(base, void, ggml_build_forward_expand, (struct ggml_cgraph *, struct ggml_tensor *))                        \
  X(base, size_t, ggml_nbytes, (const struct ggml_tensor *))                                                    \
  X(base, size_t, ggml_row_size, (enum ggml_type, int64_t))                                                     \
  X(base, void *, ggml_get_data, (const struct ggml_tensor *))                                                  \
  X(base, size_t, ggml_quantize_chunk,                                                                          \
    (enum ggml_type, const float *, void *, int64_t, int64_t, int64_t, const float *))                          \
  X(base, void, ggml_threadpool_params_init, (struct ggml_threadpool_params *, int))                            \
  X(base, ggml_backend_buffer_t, ggml_backend_alloc_ctx_tensors_from_buft,                                      \
    (struct ggml_context *, ggml_backend_buffer_type_t))                                                        \
  X(base, const char *, ggml_backend_buft_name, (ggml_backend_buffer_type_t))                                   \
  X(base, const char *, ggml_backend_buffer_name, (ggml_backend_buffer_t))                                      \
  X(base, void, ggml_backend_buffer_free, (ggml_backend_buffer_t))                                              \
  X(base, void, ggml_backend_tensor_set, (struct ggml_tensor *, const void *, size_t, size_t))                  \
  X(base, void, ggml_backend_tensor_get, (const struct ggml_tensor *, void *, size_t, size_t))                  \
  X(base, enum ggml_status, ggml_backend_graph_compute, (ggml_backend_t, struct ggml_cgraph *))                 \
  X(base, void, ggml_backend_free, (ggml_backend_t))                                                            \
  X(base, const char *, ggml_backend_dev_description, (ggml_backend_dev_t))                                     \
  X(base, ggml_backend_t, ggml_backend_dev_init, (ggml_backend_dev_t, const char *))                            \
  X(base, ggml_backend_buffer_type_t, ggml_backend_dev_buffer_type, (ggml_backend_dev_t))                       \
  X(base, bool, ggml_backend_dev_supports_op, (ggml_backend_dev_t, const struct ggml_tensor *))                 \
  X(base, ggml_backend_dev_t, ggml_backend_reg_dev_get, (ggml_backend_reg_t, size_t))                           \
  X(base, void *, ggml_backend_reg_get_proc_address, (ggml_backend_reg_t, const char *))                        \
  X(reg, ggml_backend_reg_t, ggml_backend_load, (const char *))

#define DECLARE(lib, ret, name, args) static ret(*p_##name) args;
GGML_FUNCTIONS(DECLARE)

/* Looked up with ggml_backend_reg_get_proc_address on the CPU backend's registry (ggml-backend.h and
 * ggml-cpu.h), as llama.cpp does. */
typedef void (*set_n_threads_fn)(ggml_backend_t, int);
typedef ggml_backend_buffer_type_t *(*get_extra_bufts_fn)(ggml_backend_dev_t);
typedef struct ggml_backend_feature *(*get_features_fn)(ggml_backend_reg_t);
typedef struct ggml_threadpool *(*threadpool_new_fn)(struct ggml_threadpool_params *);
typedef void (*threadpool_free_fn)(struct ggml_threadpool *);
typedef void (*set_threadpool_fn)(ggml_backend_t, struct ggml_threadpool *);
/* Exported by each libggml-cpu-<variant>.so (GGML_BACKEND_DL builds). */
typedef int (*score_fn)(void);
typedef ggml_backend_reg_t (*backend_init_fn)(void);

/* ---- helpers ---- */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "llama-peer: ");
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void *open_lib(const char *dir, const char *file, int flags) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  void *h = dlopen(path, flags);
  if (!h) die("cannot load %s: %s", path, dlerror());
  return h;
}

/* libggml.so is versioned in these builds (libggml.v0.5.0.so); take whichever the directory holds. */
static char *find_ggml_lib(const char *dir) {
  static char name[512];
  DIR *d = opendir(dir);
  if (!d) die("cannot read %s", dir);
  struct dirent *e;
  name[0] = 0;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (strncmp(e->d_name, "libggml.", 8) == 0 && n > 3 && strcmp(e->d_name + n - 3, ".so") == 0 && n < sizeof name) {
      strcpy(name, e->d_name);
      break;
    }
  }
  closedir(d);
  if (!name[0]) die("no libggml*.so in %s", dir);
  return name;
}

static void load_api(const char *dir) {
  void *base = open_lib(dir, "libggml-base.so", RTLD_NOW | RTLD_GLOBAL);
  void *reg = open_lib(dir, find_ggml_lib(dir), RTLD_NOW | RTLD_GLOBAL);
#define RESOLVE(lib, ret, name, args)                                   \
  *(void **)&p_##name = dlsym(lib, #name);                               \
  if (!p_##name) die("the ggml libraries in %s do not export %s", dir, #name);
  GGML_FUNCTIONS(RESOLVE)
#undef RESOLVE
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *read_file(const char *dir, const char *name, size_t bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open %s", path);
  void *buf = malloc(bytes);
  if (!buf || fread(buf, 1, bytes, f) != bytes) die("%s is shorter than expected", path);
  fclose(f);
  return buf;
}

static void write_file(const char *dir, const char *name, const void *data, size_t bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, bytes, f) != bytes || fclose(f) != 0) die("cannot write %s", path);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void print_features(ggml_backend_reg_t reg) {
  get_features_fn features = (get_features_fn)p_ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
  printf("{");
  if (features) {
    int first = 1;
    for (struct ggml_backend_feature *f = features(reg); f && f->name; f++) {
      printf("%s\"%s\":\"%s\"", first ? "" : ",", f->name, f->value);
      first = 0;
    }
  }
  printf("}");
}

/* ---- list: the CPU variants in the directory and their scores on this CPU ---- */

static int cmd_list(const char *dir) {
  load_api(dir);
  printf("{\"version\":\"%s\",\"commit\":\"%s\",\"variants\":[", p_ggml_version(), p_ggml_commit());
  DIR *d = opendir(dir);
  if (!d) die("cannot read %s", dir);
  struct dirent *e;
  int first = 1;
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    size_t len = strlen(n);
    if (strncmp(n, "libggml-cpu-", 12) != 0 || len < 16 || strcmp(n + len - 3, ".so") != 0) continue;
    /* RTLD_LOCAL: each variant keeps its own symbols; only its score and features are read here. */
    void *h = open_lib(dir, n, RTLD_NOW | RTLD_LOCAL);
    score_fn score = (score_fn)dlsym(h, "ggml_backend_score");
    backend_init_fn init = (backend_init_fn)dlsym(h, "ggml_backend_init");
    int s = score ? score() : -1;
    printf("%s{\"name\":\"%.*s\",\"file\":\"%s\",\"score\":%d,\"features\":", first ? "" : ",", (int)(len - 15), n + 12, n, s);
    first = 0;
    if (s > 0 && init) print_features(init());
    else printf("{}");
    printf("}");
  }
  closedir(d);
  printf("]}\n");
  return 0;
}

/* ---- what both commands share: the CPU backend and the timing loop ---- */

/* ggml's CPU backend as llama.cpp sets it up, with the functions it reaches through its registry. */
struct cpu_backend {
  ggml_backend_reg_t reg;
  ggml_backend_dev_t dev;
  ggml_backend_t backend;
  set_n_threads_fn set_n_threads;
  get_extra_bufts_fn extra_bufts;
  threadpool_new_fn tp_new;
  threadpool_free_fn tp_free;
  set_threadpool_fn set_tp;
};

/* ggml_backend_load() of libggml-cpu-<variant>.so (it refuses a variant this CPU cannot run), the
 * device's backend, and the functions ggml-backend.h and ggml-cpu.h reach by name, as llama.cpp does. */
static struct cpu_backend open_cpu_backend(const char *dir, const char *variant) {
  struct cpu_backend b;
  char path[4096];
  snprintf(path, sizeof path, "%s/libggml-cpu-%s.so", dir, variant);
  b.reg = p_ggml_backend_load(path);
  if (!b.reg) die("ggml_backend_load(%s) failed (the CPU lacks an instruction this variant needs, or it did not load)", path);
  b.dev = p_ggml_backend_reg_dev_get(b.reg, 0);
  b.backend = p_ggml_backend_dev_init(b.dev, NULL);
  if (!b.backend) die("ggml_backend_dev_init failed for %s", path);
  b.set_n_threads = (set_n_threads_fn)p_ggml_backend_reg_get_proc_address(b.reg, "ggml_backend_set_n_threads");
  b.extra_bufts = (get_extra_bufts_fn)p_ggml_backend_reg_get_proc_address(b.reg, "ggml_backend_dev_get_extra_bufts");
  b.tp_new = (threadpool_new_fn)p_ggml_backend_reg_get_proc_address(b.reg, "ggml_threadpool_new");
  b.tp_free = (threadpool_free_fn)p_ggml_backend_reg_get_proc_address(b.reg, "ggml_threadpool_free");
  b.set_tp = (set_threadpool_fn)p_ggml_backend_reg_get_proc_address(b.reg, "ggml_backend_cpu_set_threadpool");
  if (!b.set_n_threads || !b.tp_new || !b.tp_free || !b.set_tp) die("the CPU backend in %s lacks the threading functions", path);
  return b;
}

/*
 * For each thread count: a persistent ggml threadpool of T threads (default parameters) attached
 * to the backend, then `warmup` untimed and `runs` timed calls, call i computing graph i % copies
 * (CLOCK_MONOTONIC around ggml_backend_graph_compute); one JSON line per thread count with the
 * median. The output `y0` of the first call of the first thread count is written to
 * <out dir>/<y_name>; later thread counts report whether their first output matched it bit for bit.
 */
static void time_graphs(struct cpu_backend *b, struct ggml_cgraph **g, struct ggml_tensor *y0, int copies, int warmup, int runs,
                        int nthreads, char **threads_arg, const char *out, const char *y_name) {
  const size_t ybytes = p_ggml_nbytes(y0);
  uint8_t *yfirst = malloc(ybytes), *ycur = malloc(ybytes);
  double *times = malloc(sizeof(double) * runs);
  for (int t = 0; t < nthreads; t++) {
    const int T = atoi(threads_arg[t]);
    if (T < 1 || T > GGML_MAX_N_THREADS) die("bad thread count %s", threads_arg[t]);
    struct ggml_threadpool_params tpp;
    p_ggml_threadpool_params_init(&tpp, T);
    struct ggml_threadpool *tp = b->tp_new(&tpp);
    if (!tp) die("ggml_threadpool_new failed");
    b->set_tp(b->backend, tp);
    b->set_n_threads(b->backend, T);
    bool same = true;
    for (int i = 0; i < warmup + runs; i++) {
      const int c = i % copies;
      const double t0 = now_s();
      if (p_ggml_backend_graph_compute(b->backend, g[c]) != GGML_STATUS_SUCCESS) die("ggml_backend_graph_compute failed");
      const double dt = now_s() - t0;
      if (i >= warmup) times[i - warmup] = dt;
      if (i == 0) {
        p_ggml_backend_tensor_get(y0, t == 0 ? yfirst : ycur, 0, ybytes);
        if (t == 0) write_file(out, y_name, yfirst, ybytes);
        else same = memcmp(yfirst, ycur, ybytes) == 0;
      }
    }
    qsort(times, runs, sizeof *times, cmp_double);
    const double med = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    printf("{\"threads\":%d,\"median_ms\":%.6f,\"min_ms\":%.6f,\"runs\":%d,\"copies\":%d,\"same_as_first\":%s}\n", T, med * 1e3,
           times[0] * 1e3, runs, copies, same ? "true" : "false");
    fflush(stdout);
    b->set_tp(b->backend, NULL);
    b->tp_free(tp);
  }
  free(times);
  free(ycur);
  free(yfirst);
}

static enum ggml_type parse_type(const char *name, bool allow_f16) {
  if (strcmp(name, "q4_0") == 0) return GGML_TYPE_Q4_0;
  if (strcmp(name, "q8_0") == 0) return GGML_TYPE_Q8_0;
  if (allow_f16 && strcmp(name, "f16") == 0) return GGML_TYPE_F16;
  die("unknown type %s (q4_0, q8_0%s)", name, allow_f16 ? " or f16" : "");
  return GGML_TYPE_F32;
}

/* ---- run: time one quantized mul_mat ---- */

/* Whether the CPU device runs W x X with W in a buffer of type `buft` (llama.cpp's test for its
 * weight buffer types): a throwaway tensor of W's type and shape is allocated there (no data set)
 * and the device is asked about the mul_mat that reads it. */
static bool buft_supported(ggml_backend_dev_t dev, ggml_backend_buffer_type_t buft, enum ggml_type type, int64_t M, int64_t N, int64_t K) {
  struct ggml_init_params ip = { 4 * p_ggml_tensor_overhead(), NULL, true };
  struct ggml_context *wctx = p_ggml_init(ip), *ctx = p_ggml_init(ip);
  struct ggml_tensor *w = p_ggml_new_tensor_2d(wctx, type, K, N);
  /* x and the product stay unallocated, which the check allows. */
  struct ggml_tensor *x = p_ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, M);
  bool ok = false;
  ggml_backend_buffer_t buf = p_ggml_backend_alloc_ctx_tensors_from_buft(wctx, buft);
  if (buf) {
    ok = p_ggml_backend_dev_supports_op(dev, p_ggml_mul_mat(ctx, w, x));
    p_ggml_backend_buffer_free(buf);
  }
  p_ggml_free(ctx);
  p_ggml_free(wctx);
  return ok;
}

static int cmd_run(int argc, char **argv) {
  if (argc < 14) {
    fprintf(stderr, "usage: llama-peer run <lib dir> <cpu variant> <in dir> <out dir> q4_0|q8_0 M N K copies warmup runs threads...\n");
    return 2;
  }
  const char *dir = argv[2], *variant = argv[3], *in = argv[4], *out = argv[5];
  const int64_t M = atoll(argv[7]), N = atoll(argv[8]), K = atoll(argv[9]);
  const int copies = atoi(argv[10]), warmup = atoi(argv[11]), runs = atoi(argv[12]);
  const enum ggml_type type = parse_type(argv[6], false);
  if (M < 1 || N < 1 || K < 1 || K % 32 || copies < 1 || warmup < 0 || runs < 1) die("bad shape or counts");

  load_api(dir);
  struct cpu_backend cpu = open_cpu_backend(dir, variant);

  /* Weights: ggml's own quantizer on the bench's f32 weights. */
  float *wf = read_file(in, "w.f32", (size_t)N * K * sizeof(float));
  float *xf = read_file(in, "x.f32", (size_t)M * K * sizeof(float));
  const size_t wbytes = p_ggml_row_size(type, K) * N;
  uint8_t *wq = malloc(wbytes);
  if (!wq || p_ggml_quantize_chunk(type, wf, wq, 0, N, K, NULL) != wbytes) die("ggml_quantize_chunk failed");
  free(wf);
  write_file(out, "wq.bin", wq, wbytes);

  /* The weights' buffer type, chosen as llama.cpp chooses it (extra buffer types first). */
  ggml_backend_buffer_type_t wbuft = NULL;
  if (cpu.extra_bufts) {
    for (ggml_backend_buffer_type_t *b = cpu.extra_bufts(cpu.dev); b && *b; b++) {
      if (buft_supported(cpu.dev, *b, type, M, N, K)) {
        wbuft = *b;
        break;
      }
    }
  }
  if (!wbuft) wbuft = p_ggml_backend_dev_buffer_type(cpu.dev);

  struct ggml_init_params wp = { (size_t)copies * p_ggml_tensor_overhead() + 1024, NULL, true };
  struct ggml_context *wctx = p_ggml_init(wp);
  struct ggml_tensor **w = calloc(copies, sizeof *w);
  for (int c = 0; c < copies; c++) w[c] = p_ggml_new_tensor_2d(wctx, type, K, N);
  ggml_backend_buffer_t wbuf = p_ggml_backend_alloc_ctx_tensors_from_buft(wctx, wbuft);
  if (!wbuf) die("cannot allocate the weights in %s", p_ggml_backend_buft_name(wbuft));
  for (int c = 0; c < copies; c++) p_ggml_backend_tensor_set(w[c], wq, 0, wbytes);
  /* Repacking rewrites the blocks in place, so repacked bytes differ from ggml's q4_0/q8_0 bytes. */
  const bool repacked = memcmp(p_ggml_get_data(w[0]), wq, wbytes) != 0;

  struct ggml_init_params ap = { (size_t)(2 * copies + 2) * p_ggml_tensor_overhead() + (size_t)copies * p_ggml_graph_overhead() + 4096, NULL, true };
  struct ggml_context *actx = p_ggml_init(ap);
  struct ggml_tensor *x = p_ggml_new_tensor_2d(actx, GGML_TYPE_F32, K, M);
  struct ggml_tensor **y = calloc(copies, sizeof *y);
  struct ggml_cgraph **g = calloc(copies, sizeof *g);
  for (int c = 0; c < copies; c++) {
    y[c] = p_ggml_mul_mat(actx, w[c], x);
    g[c] = p_ggml_new_graph(actx);
    p_ggml_build_forward_expand(g[c], y[c]);
  }
  ggml_backend_buffer_t abuf = p_ggml_backend_alloc_ctx_tensors_from_buft(actx, p_ggml_backend_dev_buffer_type(cpu.dev));
  if (!abuf) die("cannot allocate X and Y");
  if (!p_ggml_backend_dev_supports_op(cpu.dev, y[0])) die("the CPU device does not support this mul_mat with W in %s", p_ggml_backend_buft_name(wbuft));
  p_ggml_backend_tensor_set(x, xf, 0, (size_t)M * K * sizeof(float));
  free(xf);

  printf("{\"setup\":true,\"version\":\"%s\",\"commit\":\"%s\",\"device\":\"%s\",\"buffer_type\":\"%s\",\"repacked\":%s,\"weight_bytes\":%zu,\"copies\":%d,\"features\":",
         p_ggml_version(), p_ggml_commit(), p_ggml_backend_dev_description(cpu.dev), p_ggml_backend_buft_name(wbuft), repacked ? "true" : "false", wbytes, copies);
  print_features(cpu.reg);
  printf("}\n");
  fflush(stdout);

  time_graphs(&cpu, g, y[0], copies, warmup, runs, argc - 13, argv + 13, out, "y.bin");

  free(g);
  free(y);
  free(w);
  free(wq);
  p_ggml_backend_buffer_free(abuf);
  p_ggml_backend_buffer_free(wbuf);
  p_ggml_free(actx);
  p_ggml_free(wctx);
  p_ggml_backend_free(cpu.backend);
  return 0;
}

/* ---- attn: time one flash attention over a KV cache laid out as llama.cpp lays it out ---- */

static int cmd_attn(int argc, char **argv) {
  if (argc < 17) {
    fprintf(stderr, "usage: llama-peer attn <lib dir> <cpu variant> <in dir> <out dir> f16|q8_0|q4_0 Hq Hkv D Sq Skv causal copies warmup runs threads...\n");
    return 2;
  }
  const char *dir = argv[2], *variant = argv[3], *in = argv[4], *out = argv[5];
  const enum ggml_type type = parse_type(argv[6], true);
  const int64_t Hq = atoll(argv[7]), Hkv = atoll(argv[8]), D = atoll(argv[9]), Sq = atoll(argv[10]), Skv = atoll(argv[11]);
  const bool causal = atoi(argv[12]) != 0;
  const int copies = atoi(argv[13]), warmup = atoi(argv[14]), runs = atoi(argv[15]);
  if (Hq < 1 || Hkv < 1 || Hq % Hkv || D < 1 || D % 32 || Sq < 1 || Skv < Sq || copies < 1 || warmup < 0 || runs < 1) die("bad shape or counts");

  load_api(dir);
  struct cpu_backend cpu = open_cpu_backend(dir, variant);

  /* The cache as llama.cpp keeps one layer of it: one row of Hkv*D values per position (heads
   * contiguous within a row), in the cache type, quantized by ggml's own quantizer. */
  const int64_t row = Hkv * D;
  float *qf = read_file(in, "q.f32", (size_t)Sq * Hq * D * sizeof(float));
  const size_t kvbytes = p_ggml_row_size(type, row) * Skv;
  uint8_t *kq = malloc(kvbytes), *vq = malloc(kvbytes);
  const char *names[2] = { "k.f32", "v.f32" };
  uint8_t *dst[2] = { kq, vq };
  for (int i = 0; i < 2; i++) {
    float *f = read_file(in, names[i], (size_t)Skv * row * sizeof(float));
    if (!dst[i] || p_ggml_quantize_chunk(type, f, dst[i], 0, Skv, row, NULL) != kvbytes) die("ggml_quantize_chunk failed");
    free(f);
  }
  write_file(out, "k.bin", kq, kvbytes);
  write_file(out, "v.bin", vq, kvbytes);

  /* The caches live in the device's plain buffer (llama.cpp never repacks its KV cache). */
  struct ggml_init_params cp = { (size_t)2 * copies * p_ggml_tensor_overhead() + 1024, NULL, true };
  struct ggml_context *cctx = p_ggml_init(cp);
  struct ggml_tensor **kc = calloc(copies, sizeof *kc), **vc = calloc(copies, sizeof *vc);
  for (int c = 0; c < copies; c++) {
    kc[c] = p_ggml_new_tensor_2d(cctx, type, row, Skv);
    vc[c] = p_ggml_new_tensor_2d(cctx, type, row, Skv);
  }
  ggml_backend_buffer_t cbuf = p_ggml_backend_alloc_ctx_tensors_from_buft(cctx, p_ggml_backend_dev_buffer_type(cpu.dev));
  if (!cbuf) die("cannot allocate %d KV cache copies", copies);
  for (int c = 0; c < copies; c++) {
    p_ggml_backend_tensor_set(kc[c], kq, 0, kvbytes);
    p_ggml_backend_tensor_set(vc[c], vq, 0, kvbytes);
  }

  /* The graph llama.cpp's build_attn_mha makes with flash attention on: Q [D, Hq, Sq] f32 permuted
   * to [D, Sq, Hq]; K and V views [D, Skv, Hkv] of the cache (V not transposed); an f16 mask
   * [Skv, Sq] with 0 where query i sees key j (j <= i + Skv - Sq when causal) and -inf elsewhere;
   * ggml_flash_attn_ext with scale 1/sqrt(D) and F32 precision. The output is [D, Hq, Sq] f32. */
  struct ggml_init_params ap = { (size_t)(6 * copies + 4) * p_ggml_tensor_overhead() + (size_t)copies * p_ggml_graph_overhead() + 4096, NULL, true };
  struct ggml_context *actx = p_ggml_init(ap);
  struct ggml_tensor *qin = p_ggml_new_tensor_3d(actx, GGML_TYPE_F32, D, Hq, Sq);
  struct ggml_tensor *q = p_ggml_permute(actx, qin, 0, 2, 1, 3);
  struct ggml_tensor *mask = p_ggml_new_tensor_2d(actx, GGML_TYPE_F16, Skv, Sq);
  const size_t row_bytes = p_ggml_row_size(type, row), head_bytes = p_ggml_row_size(type, D);
  struct ggml_tensor **o = calloc(copies, sizeof *o);
  struct ggml_cgraph **g = calloc(copies, sizeof *g);
  for (int c = 0; c < copies; c++) {
    struct ggml_tensor *k = p_ggml_view_3d(actx, kc[c], D, Skv, Hkv, row_bytes, head_bytes, 0);
    struct ggml_tensor *v = p_ggml_view_3d(actx, vc[c], D, Skv, Hkv, row_bytes, head_bytes, 0);
    o[c] = p_ggml_flash_attn_ext(actx, q, k, v, mask, 1.0f / sqrtf((float)D), 0.0f, 0.0f);
    p_ggml_flash_attn_ext_set_prec(o[c], GGML_PREC_F32);
    g[c] = p_ggml_new_graph(actx);
    p_ggml_build_forward_expand(g[c], o[c]);
  }
  ggml_backend_buffer_t abuf = p_ggml_backend_alloc_ctx_tensors_from_buft(actx, p_ggml_backend_dev_buffer_type(cpu.dev));
  if (!abuf) die("cannot allocate Q, the mask and the outputs");
  if (!p_ggml_backend_dev_supports_op(cpu.dev, o[0])) die("the CPU device does not support flash attention with a %s cache", argv[6]);
  p_ggml_backend_tensor_set(qin, qf, 0, (size_t)Sq * Hq * D * sizeof(float));
  free(qf);
  uint16_t *m = malloc((size_t)Sq * Skv * sizeof *m);
  for (int64_t i = 0; i < Sq; i++)
    for (int64_t j = 0; j < Skv; j++) m[i * Skv + j] = !causal || j <= i + Skv - Sq ? 0x0000 : 0xFC00; /* f16 0 and -inf */
  p_ggml_backend_tensor_set(mask, m, 0, (size_t)Sq * Skv * sizeof *m);
  free(m);

  printf("{\"setup\":true,\"version\":\"%s\",\"commit\":\"%s\",\"device\":\"%s\",\"kv_bytes\":%zu,\"copies\":%d}\n", p_ggml_version(), p_ggml_commit(),
         p_ggml_backend_dev_description(cpu.dev), 2 * kvbytes, copies);
  fflush(stdout);

  time_graphs(&cpu, g, o[0], copies, warmup, runs, argc - 16, argv + 16, out, "o.bin");

  free(g);
  free(o);
  free(kc);
  free(vc);
  free(kq);
  free(vq);
  p_ggml_backend_buffer_free(abuf);
  p_ggml_backend_buffer_free(cbuf);
  p_ggml_free(actx);
  p_ggml_free(cctx);
  p_ggml_backend_free(cpu.backend);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "list") == 0) return cmd_list(argv[2]);
  if (argc >= 2 && strcmp(argv[1], "run") == 0) return cmd_run(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "attn") == 0) return cmd_attn(argc, argv);
  fprintf(stderr,
          "usage: llama-peer list <lib dir>\n"
          "     | run <lib dir> <cpu variant> <in dir> <out dir> q4_0|q8_0 M N K copies warmup runs threads...\n"
          "     | attn <lib dir> <cpu variant> <in dir> <out dir> f16|q8_0|q4_0 Hq Hkv D Sq Skv causal copies warmup runs threads...\n");
  return 2;
}
