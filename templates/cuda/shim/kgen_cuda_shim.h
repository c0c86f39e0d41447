/* kgen CUDA CPU shim: makes a kgen-emitted kernel.cu (and its run program) valid C++ for g++, and
 * runs its kernels on the CPU. Each GPU thread of a block is a fiber; fibers switch only at
 * barriers and warp-synchronous points (__syncthreads, __syncwarp, shuffles, votes, the mma and
 * ldmatrix wrappers), so every lane of a warp has published its value before any lane reads.
 *
 * Build: g++ -std=c++17 -I<this dir> kernel.cu kgen_run.cu kgen_cuda_shim.cpp (the directory holds
 * cuda_runtime.h and cuda_fp16.h that include this file). What it checks beyond running: deadlocks
 * (a barrier some thread never reaches), warp operations with a partial mask or an exited lane,
 * misaligned cp.async, cp.async reading outside every cudaMalloc allocation or writing outside the
 * block's shared memory, and (built with -fsanitize=address) any access outside shared memory or a
 * device allocation. Each is reported on stderr and aborts the process.
 *
 * Only what kgen's templates use is implemented; it is not a general CUDA emulator. Timing events
 * measure CPU wall time and say nothing about a GPU. */
#ifndef KGEN_CUDA_SHIM_H
#define KGEN_CUDA_SHIM_H

#define KGEN_CUDA_SHIM 1

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>
#include <utility>

/* ---- qualifiers ------------------------------------------------------------------------------ */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))

/* Shared memory is one byte array per block (see the templates' KG_SHARED): fresh for every block,
 * filled with 0xff (NaN as floats) so a read of a byte nobody wrote shows up in the result. */
#define KG_SHARED(name, bytes) unsigned char *name = kg_shim::shared_memory(bytes)
#define KG_DYNAMIC_SHARED(name) unsigned char *name = kg_shim::shared_memory(0)
/* g++ picks its own unrolling. */
#define KG_UNROLL
#define KG_NO_UNROLL

/* ---- vector types and built-in variables ----------------------------------------------------- */
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

/* Set by the block scheduler before it resumes a fiber. */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

/* ---- runtime API (the part the launcher and run program use) --------------------------------- */
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
typedef struct kg_shim_stream *cudaStream_t;
typedef struct kg_shim_event *cudaEvent_t;
struct cudaDeviceProp {
  char name[256];
  int major, minor, multiProcessorCount;
  size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin;
  int l2CacheSize, maxThreadsPerBlock, warpSize;
};

const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T>
inline cudaError_t cudaMalloc(T **p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void **>(p), bytes);
}
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaDeviceReset(void);

namespace kg_shim {
/** Dynamic shared memory a launch may take without opting in, as on every GPU since sm_70. */
constexpr size_t kDefaultDynamicShared = 48 * 1024;
/** Records `kernel`'s opt-in (cudaFuncAttributeMaxDynamicSharedMemorySize) until cudaDeviceReset. */
cudaError_t set_max_dynamic_shared(const void *kernel, int bytes);
/**
 * Runs `body(ctx)` as every thread of every block of the grid; blocks run one after another. A
 * launch asking for more dynamic shared memory than `kernel` may take (kDefaultDynamicShared, or its
 * opt-in since the last cudaDeviceReset) is refused as an invalid value, as a GPU refuses it.
 */
cudaError_t launch(const void *kernel, dim3 grid, dim3 block, size_t dynamicShared, void (*body)(void *), void *ctx);
unsigned char *shared_memory(size_t bytes);
unsigned lane_id();
void block_sync();
void warp_sync(unsigned mask);
/** Bytes each lane may publish per warp exchange. */
constexpr size_t kSlot = 32;
/**
 * Publishes this lane's `bytes` and waits until every lane of the warp has published; returns the
 * 32 slots (lane i at i * kSlot), valid until this lane's next exchange.
 */
const unsigned char *exchange(unsigned mask, const void *mine, size_t bytes);
void cp_async(void *dst, const void *src, int bytes, int srcBytes);
void cp_async_commit();
void cp_async_wait(int pendingGroups);
float half_to_float(unsigned short h);
unsigned short half_from_double(double d);

template <class F, class... A, size_t... I>
inline void invoke(F f, void **args, std::index_sequence<I...>) {
  f(*static_cast<typename std::decay<A>::type *>(args[I])...);
}
}  // namespace kg_shim

template <class F>
inline cudaError_t cudaFuncSetAttribute(F *kernel, cudaFuncAttribute, int value) {
  return kg_shim::set_max_dynamic_shared(reinterpret_cast<const void *>(kernel), value);
}

/** The launcher's `cudaLaunchKernel(kernel, grid, block, args, shared, stream)` runs the kernel here. */
template <class... A>
inline cudaError_t cudaLaunchKernel(void (*f)(A...), dim3 grid, dim3 block, void **args, size_t sharedMem = 0, cudaStream_t = 0) {
  struct Call {
    void (*f)(A...);
    void **args;
  } call{f, args};
  return kg_shim::launch(reinterpret_cast<const void *>(f), grid, block, sharedMem, [](void *p) {
    Call *c = static_cast<Call *>(p);
    kg_shim::invoke<void (*)(A...), A...>(c->f, c->args, std::index_sequence_for<A...>{});
  }, &call);
}

/* ---- barriers, shuffles, votes --------------------------------------------------------------- */
inline void __syncthreads() { kg_shim::block_sync(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { kg_shim::warp_sync(mask); }

template <class T>
inline T kg_shim_read_lane(const unsigned char *all, int lane) {
  T r;
  memcpy(&r, all + kg_shim::kSlot * (size_t)lane, sizeof r);
  return r;
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  static_assert(sizeof(T) <= kg_shim::kSlot, "shuffled type too large");
  const unsigned char *all = kg_shim::exchange(mask, &v, sizeof v);
  const int lane = (int)kg_shim::lane_id(), base = lane & ~(width - 1);
  return kg_shim_read_lane<T>(all, base + (src & (width - 1)));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  const unsigned char *all = kg_shim::exchange(mask, &v, sizeof v);
  const int lane = (int)kg_shim::lane_id(), src = lane ^ laneMask;
  return (src & ~(width - 1)) == (lane & ~(width - 1)) ? kg_shim_read_lane<T>(all, src) : v;
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const unsigned char *all = kg_shim::exchange(mask, &v, sizeof v);
  const int lane = (int)kg_shim::lane_id(), src = lane + (int)delta;
  return (src & ~(width - 1)) == (lane & ~(width - 1)) ? kg_shim_read_lane<T>(all, src) : v;
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const unsigned char *all = kg_shim::exchange(mask, &v, sizeof v);
  const int lane = (int)kg_shim::lane_id(), src = lane - (int)delta;
  return src >= (lane & ~(width - 1)) ? kg_shim_read_lane<T>(all, src) : v;
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  const int p = pred != 0;
  const unsigned char *all = kg_shim::exchange(mask, &p, sizeof p);
  unsigned out = 0;
  for (int i = 0; i < 32; i++)
    if (((mask >> i) & 1u) && kg_shim_read_lane<int>(all, i)) out |= 1u << i;
  return out;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }

/* ---- bit and type intrinsics ----------------------------------------------------------------- */
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  return (unsigned)((((uint64_t)hi << 32) | lo) >> (shift & 31u));
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  return (unsigned)(((((uint64_t)hi << 32) | lo) << (shift & 31u)) >> 32);
}
/* Result byte i is byte (s >> 4i) & 7 of the 8 bytes {y:x} (x is bytes 0-3). */
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t in = ((uint64_t)y << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; i++) r |= (unsigned)((in >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return r;
}
inline float __int_as_float(int i) { float f; memcpy(&f, &i, sizeof f); return f; }
inline float __uint_as_float(unsigned i) { float f; memcpy(&f, &i, sizeof f); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, sizeof i); return i; }
inline unsigned __float_as_uint(float f) { unsigned i; memcpy(&i, &f, sizeof i); return i; }

/* ---- half precision -------------------------------------------------------------------------- */
struct __half {
  unsigned short kg_bits;
};
struct __half2 {
  __half x, y;
};
inline __half __ushort_as_half(unsigned short b) { __half h; h.kg_bits = b; return h; }
inline unsigned short __half_as_ushort(__half h) { return h.kg_bits; }
inline float __half2float(__half h) { return kg_shim::half_to_float(h.kg_bits); }
inline __half __float2half_rn(float f) { return __ushort_as_half(kg_shim::half_from_double(f)); }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline __half2 __halves2half2(__half a, __half b) { return {a, b}; }
inline __half2 __half2half2(__half a) { return {a, a}; }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline float2 __half22float2(__half2 h) { return {__half2float(h.x), __half2float(h.y)}; }
/* Half arithmetic rounds once, from the exact result (products of halves are exact in double). */
inline __half kg_shim_h(double d) { return __ushort_as_half(kg_shim::half_from_double(d)); }
inline __half2 __hadd2(__half2 a, __half2 b) {
  return {kg_shim_h((double)__half2float(a.x) + __half2float(b.x)), kg_shim_h((double)__half2float(a.y) + __half2float(b.y))};
}
inline __half2 __hsub2(__half2 a, __half2 b) {
  return {kg_shim_h((double)__half2float(a.x) - __half2float(b.x)), kg_shim_h((double)__half2float(a.y) - __half2float(b.y))};
}
inline __half2 __hmul2(__half2 a, __half2 b) {
  return {kg_shim_h((double)__half2float(a.x) * __half2float(b.x)), kg_shim_h((double)__half2float(a.y) * __half2float(b.y))};
}
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
  return {kg_shim_h((double)__half2float(a.x) * __half2float(b.x) + __half2float(c.x)),
          kg_shim_h((double)__half2float(a.y) * __half2float(b.y) + __half2float(c.y))};
}

/* ---- kgen's PTX wrappers, from the fragment layouts of the PTX ISA --------------------------- */
/** cp.async of `bytes` (4, 8 or 16): `srcBytes` are read, the rest of `bytes` is zero-filled. */
template <int N>
inline void kg_cp_async(void *dst, const void *src, int srcBytes) {
  kg_shim::cp_async(dst, src, N, srcBytes);
}
inline void kg_cp_async_commit() { kg_shim::cp_async_commit(); }
template <int N>
inline void kg_cp_async_wait() {
  kg_shim::cp_async_wait(N);
}

/**
 * mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32, d += a * b. With g = lane / 4, t = lane % 4:
 * a[r] holds A[g + 8 (r & 1)][2t + 8 (r >> 1) + {0, 1}] (low half first); b[r] holds
 * B[2t + 8r + {0, 1}][g]; d[i] is D[g + 8 (i >> 1)][2t + (i & 1)].
 */
inline void kg_mma_m16n8k16(float d[4], const uint32_t a[4], const uint32_t b[2]) {
  uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  const unsigned char *all = kg_shim::exchange(0xffffffffu, mine, sizeof mine);
  auto reg = [&](int lane, int r) { return kg_shim_read_lane<uint32_t>(all + 4 * r, lane); };
  auto half = [](uint32_t bits, int hi) { return kg_shim::half_to_float((unsigned short)(hi ? bits >> 16 : bits & 0xffffu)); };
  auto A = [&](int row, int k) { return half(reg((row % 8) * 4 + (k % 8) / 2, (row / 8) + 2 * (k / 8)), k & 1); };
  auto B = [&](int k, int col) { return half(reg(col * 4 + (k % 8) / 2, 4 + k / 8), k & 1); };
  const int lane = (int)kg_shim::lane_id(), g = lane / 4, t = lane % 4;
  for (int i = 0; i < 4; i++) {
    const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
    float acc = d[i];
    for (int k = 0; k < 16; k++) acc += A(row, k) * B(k, col);
    d[i] = acc;
  }
}

/**
 * ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane i gives the address of row i % 8 of matrix i / 8;
 * r[j] receives row lane / 4, columns 2 (lane % 4) + {0, 1} of matrix j.
 */
inline void kg_ldmatrix_x4(uint32_t r[4], const void *row) {
  const unsigned char *all = kg_shim::exchange(0xffffffffu, &row, sizeof row);
  const int lane = (int)kg_shim::lane_id();
  for (int j = 0; j < 4; j++) {
    const unsigned char *p = kg_shim_read_lane<const unsigned char *>(all, 8 * j + lane / 4);
    memcpy(&r[j], p + 4 * (lane % 4), 4);
  }
}

#endif
