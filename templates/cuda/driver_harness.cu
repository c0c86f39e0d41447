/* kgen_cuda_harness: the host program kgen's GPU runner (src/backends/cuda/gpu-runner.ts) runs CUDA
 * kernels with. Built once per machine and toolkit by its cudaHarness():
 *
 *   nvcc HARNESS_FLAGS -o kgen_cuda_harness driver_harness.cu -ldl
 *
 * HARNESS_FLAGS (gpu-runner.ts): -O2 -std=c++17 and the exit statuses as -DKG_EXIT_*=N.
 *
 * It links no CUDA library: the driver (libcuda.so.1) is opened with dlopen when it runs, so it
 * builds where there is no GPU and no driver stub, and one binary runs every candidate kernel,
 * each loaded from its own cubin through the driver API (cuModuleLoad, cuLaunchKernel).
 *
 *   kgen_cuda_harness run MODULE ENTRY DATA_DIR --grid X,Y,Z --block X,Y,Z --shared BYTES [--dynamic-shared]
 *                     --y-bytes N [--device-name NAME] [--warmup N] [--runs N] [--flush-bytes B]
 *       Reads DATA_DIR/x.bin and w.bin (and bias.bin, residual.bin when present), launches ENTRY of
 *       MODULE once with (x, w, bias, residual, y) and writes DATA_DIR/y.bin (N bytes). With --runs
 *       it then times N launches after the warm-up ones with CUDA events, writing B bytes between
 *       launches so caches start cold, and prints {"times_ms":[...]} (sorted) on stdout.
 *   kgen_cuda_harness copy --bytes N [--device-name NAME] [--warmup N] [--runs N]
 *       Times device-to-device copies of N bytes (the bandwidth probe); prints {"times_ms":[...]}.
 *   kgen_cuda_harness info [--device-name NAME]
 *       Prints the GPU's name, compute capability and limits as one JSON line.
 *
 * --device-name picks the GPU with that name (nvidia-smi's and CUDA's names agree), else GPU 0. Exit status (the numbers: DRIVER_HARNESS_EXIT in
 * src/backends/cuda/gpu-runner.ts, given to the build as -DKG_EXIT_*): EXIT_OK; EXIT_USAGE bad
 * arguments or files; EXIT_CUDA a CUDA error loading, launching or running the kernel (the message
 * names it: CUDA_ERROR_ILLEGAL_ADDRESS, ...); EXIT_NO_GPU no usable driver or GPU;
 * EXIT_OUT_OF_MEMORY no host memory for the test data. Messages go to stderr, one line each, starting with "kgen_cuda_harness:". */
#include <cuda.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <new>
#include <string>
#include <vector>

/* cuda.h maps API names to their current versions (cuMemAlloc -> cuMemAlloc_v2); the double
 * expansion turns a name into the exported symbol those prototypes describe. */
#define KG_STR2(x) #x
#define KG_STR(x) KG_STR2(x)

#define KG_DRIVER_API(X)                                                                                                      \
  X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuGetErrorString) X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName) \
  X(cuDeviceGetAttribute) X(cuDeviceTotalMem) X(cuDevicePrimaryCtxRetain) X(cuCtxSetCurrent) X(cuCtxSynchronize)            \
  X(cuModuleLoad) X(cuModuleGetFunction) X(cuFuncGetAttribute) X(cuFuncSetAttribute) X(cuLaunchKernel) X(cuMemAlloc)         \
  X(cuMemFree) X(cuMemcpyHtoD) X(cuMemcpyDtoH) X(cuMemcpyDtoDAsync) X(cuMemsetD8) X(cuMemsetD8Async) X(cuEventCreate)        \
  X(cuEventRecord) X(cuEventSynchronize) X(cuEventElapsedTime) X(cuEventDestroy)

#define KG_POINTER(f) static decltype(&::f) kg_##f;
KG_DRIVER_API(KG_POINTER)

// The build defines the statuses (-DKG_EXIT_*: DRIVER_HARNESS_EXIT in src/backends/cuda/gpu-runner.ts).
enum Exit { EXIT_OK = 0, EXIT_USAGE = KG_EXIT_USAGE, EXIT_CUDA = KG_EXIT_CUDA, EXIT_NO_GPU = KG_EXIT_NO_GPU, EXIT_OUT_OF_MEMORY = KG_EXIT_OUT_OF_MEMORY };

[[noreturn]] static void die(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("kgen_cuda_harness: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(code);
}

static std::string errorText(CUresult r) {
  const char *name = nullptr, *text = nullptr;
  if (kg_cuGetErrorName) kg_cuGetErrorName(r, &name);
  if (kg_cuGetErrorString) kg_cuGetErrorString(r, &text);
  return std::string(name ? name : "CUDA error " + std::to_string((int)r)) + (text ? std::string(" (") + text + ")" : "");
}

/* A failing driver call: exit `code` naming the call and the error. */
static void check(CUresult r, const char *what, int code = EXIT_CUDA) {
  if (r != CUDA_SUCCESS) die(code, "%s: %s", what, errorText(r).c_str());
}

static void loadDriver() {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) die(EXIT_NO_GPU, "cannot load the CUDA driver (libcuda.so.1): %s", dlerror());
  const char *missing = nullptr;
#define KG_LOAD(f)                                                     \
  kg_##f = reinterpret_cast<decltype(kg_##f)>(dlsym(lib, KG_STR(f))); \
  if (!kg_##f && !missing) missing = KG_STR(f);
  KG_DRIVER_API(KG_LOAD)
#undef KG_LOAD
  if (missing) die(EXIT_NO_GPU, "the CUDA driver has no %s: it is older than the toolkit this harness was built with (CUDA %d.%d)", missing, CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
}

struct Options {
  std::string mode, module, entry, dir, deviceName;
  unsigned grid[3] = {1, 1, 1}, block[3] = {1, 1, 1};
  size_t shared = 0, yBytes = 0, flushBytes = 0, bytes = 0;
  bool dynamicShared = false;
  int warmup = 3, runs = 0;
};

static unsigned long long number(const char *flag, const char *text) {
  char *end = nullptr;
  const unsigned long long v = strtoull(text, &end, 10);
  if (!*text || *end || text[0] == '-') die(EXIT_USAGE, "%s: expected a non-negative integer, got \"%s\"", flag, text);
  return v;
}

static void dims(const char *flag, const char *text, unsigned out[3]) {
  unsigned long long v[3];
  char tail;
  if (sscanf(text, "%llu,%llu,%llu%c", &v[0], &v[1], &v[2], &tail) != 3 || !v[0] || !v[1] || !v[2] || v[0] > 0x7fffffffu || v[1] > 65535u || v[2] > 65535u) {
    die(EXIT_USAGE, "%s: expected X,Y,Z (positive), got \"%s\"", flag, text);
  }
  for (int i = 0; i < 3; i++) out[i] = (unsigned)v[i];
}

static Options parseArgs(int argc, char **argv) {
  Options o;
  if (argc < 2) die(EXIT_USAGE, "usage: kgen_cuda_harness run|copy|info ... (see the comment at the top of driver_harness.cu)");
  o.mode = argv[1];
  int i = 2;
  if (o.mode == "run") {
    if (argc < 5) die(EXIT_USAGE, "usage: kgen_cuda_harness run MODULE ENTRY DATA_DIR --grid X,Y,Z --block X,Y,Z --shared BYTES --y-bytes N ...");
    o.module = argv[2], o.entry = argv[3], o.dir = argv[4];
    i = 5;
  } else if (o.mode != "copy" && o.mode != "info") {
    die(EXIT_USAGE, "unknown mode \"%s\": expected run, copy or info", o.mode.c_str());
  }
  for (; i < argc; i++) {
    const std::string a = argv[i];
    if (a == "--dynamic-shared") {
      o.dynamicShared = true;
      continue;
    }
    if (i + 1 >= argc) die(EXIT_USAGE, "%s needs a value", a.c_str());
    const char *v = argv[++i];
    if (a == "--grid") dims("--grid", v, o.grid);
    else if (a == "--block") dims("--block", v, o.block);
    else if (a == "--shared") o.shared = number("--shared", v);
    else if (a == "--y-bytes") o.yBytes = number("--y-bytes", v);
    else if (a == "--flush-bytes") o.flushBytes = number("--flush-bytes", v);
    else if (a == "--bytes") o.bytes = number("--bytes", v);
    else if (a == "--warmup") o.warmup = (int)std::min(number("--warmup", v), 100000ull);
    else if (a == "--runs") o.runs = (int)std::min(number("--runs", v), 100000ull);
    else if (a == "--device-name") o.deviceName = v;
    else die(EXIT_USAGE, "unknown argument %s", a.c_str());
  }
  if (o.mode == "run" && o.yBytes == 0) die(EXIT_USAGE, "run needs --y-bytes N (N > 0)");
  if (o.mode == "copy" && o.bytes == 0) die(EXIT_USAGE, "copy needs --bytes N (N > 0)");
  return o;
}

/* The GPU to run on, with its primary context current. */
static CUdevice openDevice(const Options &o) {
  check(kg_cuInit(0), "cuInit (is the NVIDIA driver loaded?)", EXIT_NO_GPU);
  int count = 0;
  check(kg_cuDeviceGetCount(&count), "cuDeviceGetCount", EXIT_NO_GPU);
  if (count == 0) die(EXIT_NO_GPU, "the CUDA driver sees no GPU (check CUDA_VISIBLE_DEVICES)");
  // By name: exactly, else one name within the other (a MIG slice's name extends its GPU's). Never
  // another GPU: its results and times would be filed under the one asked for.
  CUdevice exact = -1, near = -1;
  std::string seen;
  for (int i = 0; i < count; i++) {
    CUdevice d;
    char name[256] = {0};
    check(kg_cuDeviceGet(&d, i), "cuDeviceGet", EXIT_NO_GPU);
    check(kg_cuDeviceGetName(name, sizeof name - 1, d), "cuDeviceGetName", EXIT_NO_GPU);
    seen += std::string(i ? ", " : "") + name;
    const std::string n = name;
    if (exact < 0 && (o.deviceName.empty() || o.deviceName == n)) exact = d;
    if (near < 0 && !o.deviceName.empty() && (n.find(o.deviceName) != std::string::npos || o.deviceName.find(n) != std::string::npos)) near = d;
  }
  const CUdevice dev = exact >= 0 ? exact : near;
  if (dev < 0) die(EXIT_NO_GPU, "no GPU named \"%s\" (CUDA sees: %s)", o.deviceName.c_str(), seen.c_str());
  CUcontext ctx;
  check(kg_cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain", EXIT_NO_GPU);
  check(kg_cuCtxSetCurrent(ctx), "cuCtxSetCurrent", EXIT_NO_GPU);
  return dev;
}

static int attribute(CUdevice dev, CUdevice_attribute a) {
  int v = 0;
  check(kg_cuDeviceGetAttribute(&v, a, dev), "cuDeviceGetAttribute");
  return v;
}

static std::vector<unsigned char> readFile(const std::string &path, bool optional, bool *found) {
  *found = false;
  FILE *f = fopen(path.c_str(), "rb");
  if (!f) {
    if (optional) return {};
    die(EXIT_USAGE, "cannot open %s", path.c_str());
  }
  std::vector<unsigned char> buf;
  unsigned char chunk[1 << 16];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf.insert(buf.end(), chunk, chunk + n);
  const bool bad = ferror(f) != 0;
  fclose(f);
  if (bad) die(EXIT_USAGE, "cannot read %s", path.c_str());
  *found = true;
  return buf;
}

/* A device copy of DATA_DIR/name, or 0 when an optional file is absent. */
static CUdeviceptr upload(const Options &o, const char *name, bool optional) {
  bool found = false;
  const std::vector<unsigned char> host = readFile(o.dir + "/" + name, optional, &found);
  if (!found) return 0;
  if (host.empty()) die(EXIT_USAGE, "%s/%s is empty", o.dir.c_str(), name);
  CUdeviceptr p = 0;
  check(kg_cuMemAlloc(&p, host.size()), "cuMemAlloc");
  check(kg_cuMemcpyHtoD(p, host.data(), host.size()), "cuMemcpyHtoD");
  return p;
}

/* Times `launch` `o.runs` times after `o.warmup` untimed runs, writing the flush buffer before each. */
template <class F>
static std::vector<double> timeRuns(const Options &o, CUdeviceptr flush, F launch) {
  CUevent start, stop;
  check(kg_cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  check(kg_cuEventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate");
  std::vector<double> ms;
  for (int r = 0; r < o.warmup + o.runs; r++) {
    if (flush) check(kg_cuMemsetD8Async(flush, (unsigned char)r, o.flushBytes, 0), "cuMemsetD8Async (cache flush)");
    check(kg_cuEventRecord(start, 0), "cuEventRecord");
    launch();
    check(kg_cuEventRecord(stop, 0), "cuEventRecord");
    check(kg_cuEventSynchronize(stop), "the timed launch (cuEventSynchronize)");
    float t = 0;
    check(kg_cuEventElapsedTime(&t, start, stop), "cuEventElapsedTime");
    if (r >= o.warmup) ms.push_back(t);
  }
  kg_cuEventDestroy(start);
  kg_cuEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms;
}

static void printTimes(const std::vector<double> &ms) {
  printf("{\"times_ms\":[");
  for (size_t i = 0; i < ms.size(); i++) printf("%s%.6f", i ? "," : "", ms[i]);
  printf("]}\n");
}

static void runKernel(const Options &o, CUdevice dev) {
  CUmodule module;
  check(kg_cuModuleLoad(&module, o.module.c_str()), ("cuModuleLoad " + o.module).c_str());
  CUfunction fn;
  check(kg_cuModuleGetFunction(&fn, module, o.entry.c_str()), ("cuModuleGetFunction " + o.entry).c_str());
  int regs = 0, local = 0, staticShared = 0, maxThreads = 0;
  check(kg_cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, fn), "cuFuncGetAttribute");
  check(kg_cuFuncGetAttribute(&local, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, fn), "cuFuncGetAttribute");
  check(kg_cuFuncGetAttribute(&staticShared, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, fn), "cuFuncGetAttribute");
  check(kg_cuFuncGetAttribute(&maxThreads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn), "cuFuncGetAttribute");
  printf("{\"function\":{\"registers\":%d,\"localBytes\":%d,\"staticSharedBytes\":%d,\"maxThreadsPerBlock\":%d}}\n", regs, local, staticShared, maxThreads);
  fflush(stdout);
  // Said in numbers here rather than as the launch's bare CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES.
  const unsigned threads = o.block[0] * o.block[1] * o.block[2];
  if ((int)threads > maxThreads) die(EXIT_CUDA, "the block has %u threads but %s allows %d at %d registers per thread", threads, o.entry.c_str(), maxThreads, regs);
  const unsigned dynamicBytes = o.dynamicShared ? (unsigned)o.shared : 0;
  if (o.dynamicShared) {
    const int optin = attribute(dev, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    if ((long long)o.shared + staticShared > optin) die(EXIT_CUDA, "the kernel needs %zu bytes of shared memory per block, this GPU allows %d", o.shared + staticShared, optin);
    check(kg_cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)o.shared), "cuFuncSetAttribute (dynamic shared memory)");
  }

  CUdeviceptr x = upload(o, "x.bin", false), w = upload(o, "w.bin", false);
  CUdeviceptr bias = upload(o, "bias.bin", true), residual = upload(o, "residual.bin", true);
  CUdeviceptr y = 0;
  check(kg_cuMemAlloc(&y, o.yBytes), "cuMemAlloc");
  check(kg_cuMemsetD8(y, 0xff, o.yBytes), "cuMemsetD8");  // NaN: an output the kernel never writes shows
  void *args[] = {&x, &w, &bias, &residual, &y};
  auto launch = [&]() {
    check(kg_cuLaunchKernel(fn, o.grid[0], o.grid[1], o.grid[2], o.block[0], o.block[1], o.block[2], dynamicBytes, 0, args, nullptr), "cuLaunchKernel");
  };
  launch();
  check(kg_cuCtxSynchronize(), "the kernel (cuCtxSynchronize)");
  std::vector<unsigned char> out(o.yBytes);
  check(kg_cuMemcpyDtoH(out.data(), y, o.yBytes), "cuMemcpyDtoH");
  const std::string path = o.dir + "/y.bin";
  FILE *f = fopen(path.c_str(), "wb");
  if (!f || fwrite(out.data(), 1, out.size(), f) != out.size() || fclose(f) != 0) die(EXIT_USAGE, "cannot write %s", path.c_str());

  if (o.runs > 0) {
    CUdeviceptr flush = 0;
    if (o.flushBytes) check(kg_cuMemAlloc(&flush, o.flushBytes), "cuMemAlloc (cache flush buffer)");
    printTimes(timeRuns(o, flush, launch));
    if (flush) kg_cuMemFree(flush);
  }
  for (CUdeviceptr p : {x, w, bias, residual, y}) {
    if (p) kg_cuMemFree(p);
  }
}

static void copyProbe(const Options &o) {
  CUdeviceptr src = 0, dst = 0;
  check(kg_cuMemAlloc(&src, o.bytes), "cuMemAlloc (copy source)");
  check(kg_cuMemAlloc(&dst, o.bytes), "cuMemAlloc (copy destination)");
  check(kg_cuMemsetD8(src, 1, o.bytes), "cuMemsetD8");
  printTimes(timeRuns(o, 0, [&]() { check(kg_cuMemcpyDtoDAsync(dst, src, o.bytes, 0), "cuMemcpyDtoDAsync"); }));
  kg_cuMemFree(src);
  kg_cuMemFree(dst);
}

static void info(CUdevice dev) {
  char name[256] = {0};
  check(kg_cuDeviceGetName(name, sizeof name - 1, dev), "cuDeviceGetName");
  size_t mem = 0;
  check(kg_cuDeviceTotalMem(&mem, dev), "cuDeviceTotalMem");
  int driver = 0;
  check(kg_cuDriverGetVersion(&driver), "cuDriverGetVersion");
  std::string quoted;
  for (const char *c = name; *c; c++) {
    if (*c == '"' || *c == '\\') quoted += '\\';
    quoted += *c;
  }
  printf("{\"name\":\"%s\",\"computeCapability\":\"%d.%d\",\"multiprocessors\":%d,\"l2Bytes\":%d,\"sharedPerBlockOptinBytes\":%d,"
         "\"memoryBytes\":%zu,\"driverApiVersion\":%d,\"toolkitVersion\":%d}\n",
         quoted.c_str(), attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
         attribute(dev, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT), attribute(dev, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE),
         attribute(dev, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN), mem, driver, CUDA_VERSION);
}

/* Host memory for the test data that cannot be allocated: the machine's limit, not the kernel's. */
static void outOfHostMemory() {
  std::set_new_handler(nullptr);
  die(EXIT_OUT_OF_MEMORY, "cannot allocate host memory for the test data");
}

int main(int argc, char **argv) {
  std::set_new_handler(outOfHostMemory);
  const Options o = parseArgs(argc, argv);
  loadDriver();
  const CUdevice dev = openDevice(o);
  if (o.mode == "run") runKernel(o, dev);
  else if (o.mode == "copy") copyProbe(o);
  else info(dev);
  fflush(stdout);
  return EXIT_OK;
}
