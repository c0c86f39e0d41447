/*
 * Naive attention baseline for the attention bench (bench/naive-attention.ts builds and drives it):
 * what a framework without a fused attention kernel computes, one head at a time,
 *
 *   S = scale * Q K^T            the whole [Sq, Skv] score matrix, written to memory
 *   S[i][j] = -inf               where query i may not see key j (causal: j > i + Skv - Sq)
 *   P = softmax(S) row by row    (max subtracted), in place
 *   O = P V                      reading the whole of P again
 *
 * in f32, with both products as plain loops that the compiler vectorizes (K is transposed once per
 * KV head so that the score loop is an axpy over keys). Heads are spread over T threads with
 * OpenMP; each thread owns one [Sq, Skv] score matrix (16 MiB at Sq = Skv = 2048), so the O(N^2)
 * memory traffic a fused flash kernel avoids is all here.
 *
 *   gcc -O3 -march=native -fopenmp bench/naive-attention.c -o naive-attention -lm
 *   ./naive-attention <in dir> <out dir> Hq Hkv D Sq Skv causal warmup runs threads...
 *
 * <in dir> holds q.f32 (Q [Sq][Hq][D]) and k.f32, v.f32 ([Skv][Hkv][D]), the bench's token-major
 * layout. O [Sq][Hq][D] f32 of the first call goes to <out dir>/o.bin. One JSON line per thread
 * count: median and min wall time of `runs` calls after `warmup`.
 */
#define _GNU_SOURCE
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void die(const char *msg, const char *arg) {
  fprintf(stderr, "naive-attention: %s%s\n", msg, arg);
  exit(1);
}

static float *read_f32(const char *dir, const char *name, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot open ", path);
  float *buf = malloc(n * sizeof *buf);
  if (!buf || fread(buf, sizeof *buf, n, f) != n) die("too short: ", path);
  fclose(f);
  return buf;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

struct shape {
  int Hq, Hkv, D, Sq, Skv, causal;
};

/* One call: every query head, `scores` holding one [Sq, Skv] matrix and `kt` one [D, Skv] K^T per thread. */
static void attention(struct shape s, const float *q, const float *k, const float *v, float *o, float **scores, float **kt) {
  const float scale = 1.0f / sqrtf((float)s.D);
  const int group = s.Hq / s.Hkv;
#pragma omp parallel for schedule(static)
  for (int h = 0; h < s.Hq; h++) {
    float *S = scores[omp_get_thread_num()], *KT = kt[omp_get_thread_num()];
    const int kvh = h / group;
    for (int j = 0; j < s.Skv; j++)
      for (int d = 0; d < s.D; d++) KT[(size_t)d * s.Skv + j] = k[((size_t)j * s.Hkv + kvh) * s.D + d];
    /* S = scale * Q K^T, the full matrix. */
    for (int i = 0; i < s.Sq; i++) {
      float *Si = S + (size_t)i * s.Skv;
      const float *qi = q + ((size_t)i * s.Hq + h) * s.D;
      memset(Si, 0, sizeof(float) * s.Skv);
      for (int d = 0; d < s.D; d++) {
        const float a = scale * qi[d];
        const float *kd = KT + (size_t)d * s.Skv;
        for (int j = 0; j < s.Skv; j++) Si[j] += a * kd[j];
      }
    }
    /* Mask, then softmax row by row. */
    for (int i = 0; i < s.Sq; i++) {
      float *Si = S + (size_t)i * s.Skv;
      if (s.causal)
        for (int j = i + s.Skv - s.Sq + 1; j < s.Skv; j++) Si[j] = -INFINITY;
      float m = -INFINITY, sum = 0;
      for (int j = 0; j < s.Skv; j++) m = Si[j] > m ? Si[j] : m;
      for (int j = 0; j < s.Skv; j++) {
        Si[j] = expf(Si[j] - m);
        sum += Si[j];
      }
      const float inv = 1.0f / sum;
      for (int j = 0; j < s.Skv; j++) Si[j] *= inv;
    }
    /* O = P V over every key, the masked zeros included. */
    for (int i = 0; i < s.Sq; i++) {
      const float *Pi = S + (size_t)i * s.Skv;
      float *oi = o + ((size_t)i * s.Hq + h) * s.D;
      memset(oi, 0, sizeof(float) * s.D);
      for (int j = 0; j < s.Skv; j++) {
        const float p = Pi[j];
        const float *vj = v + ((size_t)j * s.Hkv + kvh) * s.D;
        for (int d = 0; d < s.D; d++) oi[d] += p * vj[d];
      }
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 12) {
    fprintf(stderr, "usage: naive-attention <in dir> <out dir> Hq Hkv D Sq Skv causal warmup runs threads...\n");
    return 2;
  }
  const char *in = argv[1], *out = argv[2];
  struct shape s = { atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7]), atoi(argv[8]) != 0 };
  const int warmup = atoi(argv[9]), runs = atoi(argv[10]);
  if (s.Hq < 1 || s.Hkv < 1 || s.Hq % s.Hkv || s.D < 1 || s.Sq < 1 || s.Skv < s.Sq || warmup < 0 || runs < 1) die("bad shape or counts", "");
  float *q = read_f32(in, "q.f32", (size_t)s.Sq * s.Hq * s.D);
  float *k = read_f32(in, "k.f32", (size_t)s.Skv * s.Hkv * s.D);
  float *v = read_f32(in, "v.f32", (size_t)s.Skv * s.Hkv * s.D);
  const size_t obytes = sizeof(float) * s.Sq * s.Hq * s.D;
  float *o = malloc(obytes);
  double *times = malloc(sizeof(double) * runs);
  for (int t = 11; t < argc; t++) {
    const int T = atoi(argv[t]);
    if (T < 1) die("bad thread count ", argv[t]);
    omp_set_num_threads(T);
    float **scores = malloc(sizeof(float *) * T), **kt = malloc(sizeof(float *) * T);
    for (int i = 0; i < T; i++) {
      scores[i] = malloc(sizeof(float) * s.Sq * s.Skv);
      kt[i] = malloc(sizeof(float) * s.D * s.Skv);
      if (!scores[i] || !kt[i]) die("out of memory", "");
    }
    for (int r = 0; r < warmup + runs; r++) {
      const double t0 = now_s();
      attention(s, q, k, v, o, scores, kt);
      const double dt = now_s() - t0;
      if (r >= warmup) times[r - warmup] = dt;
      if (r == 0 && t == 11) {
        char path[4096];
        snprintf(path, sizeof path, "%s/o.bin", out);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(o, 1, obytes, f) != obytes || fclose(f) != 0) die("cannot write ", path);
      }
    }
    qsort(times, runs, sizeof *times, cmp_double);
    const double med = runs % 2 ? times[runs / 2] : 0.5 * (times[runs / 2 - 1] + times[runs / 2]);
    printf("{\"threads\":%d,\"median_ms\":%.6f,\"min_ms\":%.6f,\"runs\":%d}\n", T, med * 1e3, times[0] * 1e3, runs);
    fflush(stdout);
    for (int i = 0; i < T; i++) {
      free(scores[i]);
      free(kt[i]);
    }
    free(scores);
    free(kt);
  }
  return 0;
}
