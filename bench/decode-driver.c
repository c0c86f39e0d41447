/* Decode-cost driver for bench/decode.ts: times one emitted C kernel's rows function on one thread
 * with its weights resident in L2, so the figure is what decoding and the dot products cost, not
 * memory. The weights are arbitrary bytes with every block scale set to f16 1.0: the work a kernel
 * does does not depend on the codes.
 *
 *   decode-bench N K ROW_BYTES BLOCK_BYTES BLOCK_WEIGHTS SCALED CALLS PASSES
 * (SCALED = 1: each block starts with an f16 scale).
 * prints {"ns_per_64": ...}: the fastest of PASSES passes of CALLS calls over all N rows, per 64
 * weights. Built with -DKGEN_FN=kgen_<op> next to the kernel's kernel.c. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernel.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: %s N K ROW_BYTES BLOCK_BYTES BLOCK_WEIGHTS SCALED CALLS PASSES\n", argv[0]);
    return 2;
  }
  const long n = atol(argv[1]), k = atol(argv[2]), row_bytes = atol(argv[3]), block_bytes = atol(argv[4]);
  const long block_weights = atol(argv[5]), scaled = atol(argv[6]), calls = atol(argv[7]), passes = atol(argv[8]);
  uint8_t *w = malloc((size_t)(n * row_bytes));
  float *x = malloc((size_t)k * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
  void *ws = malloc(CAT(KGEN_FN, _workspace_size)());
  if (!w || !x || !y || !ws) return 5;
  uint32_t s = 12345;
  for (long i = 0; i < n * row_bytes; i++) w[i] = (uint8_t)((s = s * 1664525u + 1013904223u) >> 24);
  if (scaled) {
    for (long b = 0; b < n * (k / block_weights); b++) {
      w[b * block_bytes] = 0x00;
      w[b * block_bytes + 1] = 0x3c;
    }
  }
  for (long i = 0; i < k; i++) x[i] = (float)((long)((s = s * 1664525u + 1013904223u) >> 21) - 1024) / 1024.0f;
  CAT(KGEN_FN, _prepare)(x, ws);
  double best = 1e300;
  for (long p = 0; p < passes; p++) {
    const double t0 = now_ns();
    for (long c = 0; c < calls; c++) CAT(KGEN_FN, _rows)(ws, w, NULL, NULL, y, 0, n);
    const double t = (now_ns() - t0) / (double)calls;
    if (t < best) best = t;
  }
  printf("{\"ns_per_64\": %.4f, \"check\": %g}\n", best / ((double)n * (double)k / 64.0), (double)y[0]);
  return 0;
}
