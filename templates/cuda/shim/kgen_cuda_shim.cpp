/* kgen CUDA CPU shim: the block scheduler (one fiber per GPU thread), barriers, warp exchanges,
 * cp.async queues and the runtime API. See kgen_cuda_shim.h. */
#include "kgen_cuda_shim.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define KG_SHIM_ASAN 1
#endif
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

namespace kg_shim {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr unsigned kMaxThreads = 1024;

enum State { kReady, kWaitWarp, kWaitBlock, kDone };

struct Pending {
  unsigned char *dst;
  unsigned char data[16];
  int bytes;
  long group;  // -1 until committed
};

struct Fiber {
#if defined(__x86_64__)
  void *sp;
#else
  ucontext_t ctx;
#endif
  unsigned char *stack;  // lowest usable byte; a guard page lies below
  State state;
  unsigned long waitGen;
  unsigned tid;
  uint3 idx;
  std::vector<Pending> pending;
  long groups;
#ifdef KG_SHIM_ASAN
  void *fakeStack;
#endif
};

struct Warp {
  unsigned live, arrived, lanes;
  unsigned long gen;
  unsigned char xch[2][32 * kSlot];
};

struct Allocation {
  uintptr_t begin, end;
};

std::vector<Fiber> fibers;
std::vector<Warp> warps;
std::vector<Allocation> allocations;
/** Kernels' dynamic shared memory opt-ins since the last cudaDeviceReset (kernel, bytes). */
std::vector<std::pair<const void *, size_t>> optIns;
Fiber *cur;
unsigned blockLive, blockArrived;
unsigned long blockGen;
unsigned char *shared;
size_t sharedBytes, launchDynamicShared;
void (*kernelBody)(void *);
void *kernelCtx;
cudaError_t lastError = cudaSuccess;
#if defined(__x86_64__)
void *schedulerSp;
#else
ucontext_t schedulerCtx;
#endif
#ifdef KG_SHIM_ASAN
void *schedulerFake;
const void *mainBottom;
size_t mainSize;
#endif

[[noreturn]] void fatal(const char *what) {
  fprintf(stderr, "kgen shim: %s (block %u,%u,%u thread %u)\n", what, blockIdx.x, blockIdx.y, blockIdx.z, cur ? cur->tid : 0u);
  fflush(stderr);
  abort();
}

#if defined(__x86_64__)
/* Saves the callee-saved registers, MXCSR and the x87 control word on this stack, stores the stack
 * pointer in *save, and resumes the context whose stack pointer is `to`. */
extern "C" void kg_shim_switch(void **save, void *to);
asm(R"(
  .text
  .p2align 4
  .globl kg_shim_switch
  .hidden kg_shim_switch
  .type kg_shim_switch,@function
kg_shim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kg_shim_switch, .-kg_shim_switch
)");
#endif

void fiberEntry();

void toScheduler(bool dying) {
  Fiber *f = cur;
#ifdef KG_SHIM_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &f->fakeStack, mainBottom, mainSize);
#else
  (void)dying;
#endif
#if defined(__x86_64__)
  kg_shim_switch(&f->sp, schedulerSp);
#else
  swapcontext(&f->ctx, &schedulerCtx);
#endif
#ifdef KG_SHIM_ASAN
  __sanitizer_finish_switch_fiber(f->fakeStack, &mainBottom, &mainSize);
#endif
}

void resume(Fiber *f) {
  cur = f;
  threadIdx = f->idx;
#ifdef KG_SHIM_ASAN
  __sanitizer_start_switch_fiber(&schedulerFake, f->stack, kStackBytes);
#endif
#if defined(__x86_64__)
  kg_shim_switch(&schedulerSp, f->sp);
#else
  swapcontext(&schedulerCtx, &f->ctx);
#endif
#ifdef KG_SHIM_ASAN
  __sanitizer_finish_switch_fiber(schedulerFake, nullptr, nullptr);
#endif
}

void startFiber(Fiber *f) {
#ifdef KG_SHIM_ASAN
  __asan_unpoison_memory_region(f->stack, kStackBytes);  // redzones of the previous block's frames
#endif
#if defined(__x86_64__)
  uint64_t *sp = reinterpret_cast<uint64_t *>(f->stack + kStackBytes);
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  *--sp = 0;                                          // where fiberEntry's return address would be
  *--sp = reinterpret_cast<uint64_t>(&fiberEntry);  // kg_shim_switch returns into fiberEntry
  for (int i = 0; i < 6; i++) *--sp = 0;             // rbp rbx r12-r15
  *--sp = mxcsr | (uint64_t)fpucw << 32;
  f->sp = sp;
#else
  getcontext(&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack;
  f->ctx.uc_stack.ss_size = kStackBytes;
  f->ctx.uc_link = nullptr;
  makecontext(&f->ctx, &fiberEntry, 0);
#endif
}

void completePending(Fiber *f, long upToGroup) {
  size_t keep = 0;
  for (size_t i = 0; i < f->pending.size(); i++) {
    Pending &p = f->pending[i];
    if (p.group >= 0 && p.group < upToGroup) memcpy(p.dst, p.data, (size_t)p.bytes);
    else f->pending[keep++] = p;
  }
  f->pending.resize(keep);
}

void finishThread() {
  Fiber *f = cur;
  completePending(f, f->groups + 1);
  for (Pending &p : f->pending) memcpy(p.dst, p.data, (size_t)p.bytes);
  f->pending.clear();
  Warp &w = warps[f->tid / 32];
  if (w.arrived > 0) fatal("a thread exited while lanes of its warp wait at a warp-synchronous operation");
  if (blockArrived > 0) fatal("a thread exited while other threads wait at __syncthreads");
  w.live--;
  blockLive--;
  f->state = kDone;
}

void fiberEntry() {
#ifdef KG_SHIM_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &mainBottom, &mainSize);
#endif
  kernelBody(kernelCtx);
  finishThread();
  toScheduler(true);
  fatal("a finished thread was resumed");
}

void waitWarp(Warp &w) {
  if (++w.arrived == w.live) {
    w.arrived = 0;
    w.gen++;
    return;
  }
  cur->state = kWaitWarp;
  cur->waitGen = w.gen;
  toScheduler(false);
  cur->state = kReady;
}

Warp &warpOf(unsigned mask) {
  Warp &w = warps[cur->tid / 32];
  const unsigned full = w.lanes == 32 ? 0xffffffffu : (1u << w.lanes) - 1u;
  if (mask != full) fatal("warp-synchronous operation with a partial mask (kgen's kernels use whole warps)");
  if (w.live != w.lanes) fatal("warp-synchronous operation in a warp with exited lanes");
  return w;
}

void ensureStacks(unsigned threads) {
  while (fibers.size() < threads) {
    const size_t page = 4096;
    unsigned char *mem = static_cast<unsigned char *>(mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (mem == MAP_FAILED) fatal("cannot map a fiber stack");
    mprotect(mem, page, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
    fibers.emplace_back();
    fibers.back().stack = mem + page;
  }
}

void runBlock(unsigned threads) {
  const unsigned nwarps = (threads + 31) / 32;
  warps.assign(nwarps, Warp{});
  for (unsigned i = 0; i < nwarps; i++) {
    warps[i].lanes = i + 1 < nwarps || threads % 32 == 0 ? 32 : threads % 32;
    warps[i].live = warps[i].lanes;
  }
  blockLive = threads;
  blockArrived = 0;
  blockGen = 0;
  for (unsigned t = 0; t < threads; t++) {
    Fiber &f = fibers[t];
    f.state = kReady;
    f.tid = t;
    f.idx = {t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
    f.pending.clear();
    f.groups = 0;
    startFiber(&f);
  }
  for (;;) {
    bool live = false, ran = false;
    for (unsigned t = 0; t < threads; t++) {
      Fiber *f = &fibers[t];
      if (f->state == kDone) continue;
      live = true;
      if (f->state == kWaitWarp && warps[t / 32].gen == f->waitGen) continue;
      if (f->state == kWaitBlock && blockGen == f->waitGen) continue;
      resume(f);
      ran = true;
    }
    if (!live) break;
    if (!ran) {
      cur = nullptr;
      for (unsigned t = 0; t < threads; t++) {
        if (fibers[t].state == kDone) continue;
        cur = &fibers[t];
        break;
      }
      fatal(fibers[cur->tid].state == kWaitBlock ? "deadlock: threads wait at __syncthreads that others never reach"
                                                 : "deadlock: lanes wait at a warp-synchronous operation that others never reach");
    }
  }
  cur = nullptr;
  free(shared);
  shared = nullptr;
  sharedBytes = 0;
}

double nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

bool insideAllocation(const void *p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (const Allocation &al : allocations)
    if (a >= al.begin && a + bytes <= al.end) return true;
  return false;
}

}  // namespace

cudaError_t set_max_dynamic_shared(const void *kernel, int bytes) {
  if (bytes < 0) return lastError = cudaErrorInvalidValue;
  for (auto &o : optIns)
    if (o.first == kernel) {
      o.second = (size_t)bytes;
      return cudaSuccess;
    }
  optIns.push_back({kernel, (size_t)bytes});
  return cudaSuccess;
}

static size_t maxDynamicShared(const void *kernel) {
  for (const auto &o : optIns)
    if (o.first == kernel) return o.second;
  return kDefaultDynamicShared;
}

cudaError_t launch(const void *kernel, dim3 grid, dim3 block, size_t dynamicShared, void (*body)(void *), void *ctx) {
  const unsigned threads = block.x * block.y * block.z;
  if (threads == 0 || threads > kMaxThreads || grid.x == 0 || grid.y == 0 || grid.z == 0) return lastError = cudaErrorInvalidConfiguration;
  if (dynamicShared > maxDynamicShared(kernel)) return lastError = cudaErrorInvalidValue;
  ensureStacks(threads);
  gridDim = grid;
  blockDim = block;
  kernelBody = body;
  kernelCtx = ctx;
  launchDynamicShared = dynamicShared;
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        blockIdx = {x, y, z};
        runBlock(threads);
      }
  return cudaSuccess;
}

unsigned char *shared_memory(size_t bytes) {
  if (bytes == 0) bytes = launchDynamicShared;
  if (bytes == 0) fatal("the kernel uses dynamic shared memory but the launch gave none");
  if (!shared) {
    shared = static_cast<unsigned char *>(malloc(bytes));
    if (!shared) fatal("out of memory for shared memory");
    memset(shared, 0xff, bytes);
    sharedBytes = bytes;
  } else if (bytes != sharedBytes) {
    fatal("threads of one block declared different shared memory sizes");
  }
  return shared;
}

unsigned lane_id() { return cur->tid % 32; }

void block_sync() {
  if (++blockArrived == blockLive) {
    blockArrived = 0;
    blockGen++;
    return;
  }
  cur->state = kWaitBlock;
  cur->waitGen = blockGen;
  toScheduler(false);
  cur->state = kReady;
}

void warp_sync(unsigned mask) { waitWarp(warpOf(mask)); }

const unsigned char *exchange(unsigned mask, const void *mine, size_t bytes) {
  if (bytes > kSlot) fatal("warp exchange larger than its slot");
  Warp &w = warpOf(mask);
  // Double buffered by generation: a lane that runs ahead writes the other buffer, and cannot come
  // back to this one before every lane has passed the next barrier (and so has read this one).
  unsigned char *buf = w.xch[w.gen & 1];
  memcpy(buf + kSlot * lane_id(), mine, bytes);
  waitWarp(w);
  return buf;
}

void cp_async(void *dst, const void *src, int bytes, int srcBytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16) fatal("cp.async size must be 4, 8 or 16 bytes");
  if (srcBytes < 0 || srcBytes > bytes) fatal("cp.async source size outside [0, size]");
  if (reinterpret_cast<uintptr_t>(dst) % (uintptr_t)bytes || (srcBytes > 0 && reinterpret_cast<uintptr_t>(src) % (uintptr_t)bytes)) fatal("misaligned cp.async");
  unsigned char *d = static_cast<unsigned char *>(dst);
  if (!shared || d < shared || d + bytes > shared + sharedBytes) fatal("cp.async writes outside the block's shared memory");
  if (srcBytes > 0 && !insideAllocation(src, (size_t)srcBytes)) fatal("cp.async reads outside every cudaMalloc allocation");
  Pending p;
  p.dst = d;
  p.bytes = bytes;
  p.group = -1;
  memset(p.data, 0, sizeof p.data);
  if (srcBytes > 0) memcpy(p.data, src, (size_t)srcBytes);
  cur->pending.push_back(p);
}

void cp_async_commit() {
  for (Pending &p : cur->pending)
    if (p.group < 0) p.group = cur->groups;
  cur->groups++;
}

void cp_async_wait(int pendingGroups) { completePending(cur, cur->groups - pendingGroups); }

float half_to_float(unsigned short h) {
  const unsigned sign = (h >> 15) & 1u, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  float v;
  if (exp == 0x1f) v = mant ? NAN : INFINITY;
  else if (exp == 0) v = ldexpf((float)mant, -24);
  else v = ldexpf((float)(mant | 0x400u), (int)exp - 25);
  return sign ? -v : v;
}

unsigned short half_from_double(double d) {
  if (d != d) return 0x7e00;
  const unsigned short sign = signbit(d) ? 0x8000 : 0;
  const double a = fabs(d);
  if (a >= 65520.0) return sign | 0x7c00;
  int e;
  frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  if (a == 0 || e - 1 < -14) {
    const double q = nearbyint(ldexp(a, 24));  // units of the smallest subnormal, ties to even
    return sign | (unsigned short)q;            // q = 1024 is the smallest normal, as it should be
  }
  double q = nearbyint(ldexp(a, 10 - (e - 1)));  // in [1024, 2048]
  int E = e - 1;
  if (q == 2048) {
    q = 1024;
    E++;
  }
  if (E > 15) return sign | 0x7c00;
  return sign | (unsigned short)((E + 15) << 10 | ((unsigned)q - 1024u));
}

}  // namespace kg_shim

/* ---- runtime API ----------------------------------------------------------------------------- */
struct kg_shim_event {
  double ms;
};

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = kg_shim::lastError;
  kg_shim::lastError = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return kg_shim::lastError; }
cudaError_t cudaMalloc(void **p, size_t bytes) {
  // Exact size, so AddressSanitizer sees a kernel that reads past the end of a buffer.
  *p = malloc(bytes ? bytes : 1);
  if (!*p) return cudaErrorMemoryAllocation;
  const uintptr_t a = reinterpret_cast<uintptr_t>(*p);
  kg_shim::allocations.push_back({a, a + bytes});
  return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
  auto &al = kg_shim::allocations;
  for (size_t i = 0; i < al.size(); i++)
    if (al[i].begin == reinterpret_cast<uintptr_t>(p)) {
      al.erase(al.begin() + (long)i);
      free(p);
      return cudaSuccess;
    }
  return p ? cudaErrorInvalidValue : cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) {
  memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) { return cudaMemcpy(dst, src, bytes, kind); }
cudaError_t cudaMemset(void *p, int value, size_t bytes) {
  memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t) { return cudaMemset(p, value, bytes); }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
/** As on a GPU: every allocation is freed and every kernel's opt-in forgotten. */
cudaError_t cudaDeviceReset(void) {
  for (const kg_shim::Allocation &al : kg_shim::allocations) free(reinterpret_cast<void *>(al.begin));
  kg_shim::allocations.clear();
  kg_shim::optIns.clear();
  kg_shim::lastError = cudaSuccess;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidValue; }
cudaError_t cudaGetDevice(int *device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int) {
  memset(prop, 0, sizeof *prop);
  snprintf(prop->name, sizeof prop->name, "kgen CUDA CPU shim");
  prop->maxThreadsPerBlock = 1024;
  prop->warpSize = 32;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
  *v = 0;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) {
  *v = 0;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = new kg_shim_event{0};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  e->ms = kg_shim::nowMs();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = (float)(end->ms - start->ms);
  return cudaSuccess;
}
