import type { GpuDetection } from '../device/gpu.js';
import type { DeviceOptions } from '../device/index.js';
import type { DeviceProfile, TargetName } from '../device/profile.js';
import type { KvCacheFormat, Op, OpKind, Shape, WeightFormatName } from '../ir/types.js';
import type { CommentText } from '../render/comment-text.js';
import type { CpuVariants } from '../plan/cpu-matmul.js';
import type { KernelInputs } from '../ops/types.js';
import type { Config, Plan, PlanFamily, Planner, PlanOf, PlanRequest, SearchSpace } from '../plan/types.js';

/** What a backend renders; checked before rendering so a gap is a clear error, not a crash. */
export interface BackendCapabilities {
  ops: readonly OpKind[];
  /** Weight formats its kernels decode (ops with weights). */
  formats: readonly WeightFormatName[];
  /** KV cache formats its attention kernels read; absent: every format. */
  kvCaches?: readonly KvCacheFormat[];
  /** Whether its attention kernels take the KV length at run time (op.kvLength 'runtime'); absent: no. */
  runtimeKvLength?: boolean;
  /** Bytes a kernel's buffers may span together (WebAssembly's 32-bit memory: 4 GiB); absent: no limit of the target's own. */
  addressableBytes?: number;
}

/** A backend's report on a rendered kernel's resources, and notes for the user. */
export interface ResourceReport {
  resources?: Record<string, number | string>;
  notes: string[];
}

/** One renderer per plan family the backend renders, reading its family's typed plan. */
export type Renderers = { [F in PlanFamily]?: (plan: PlanOf<F>, ctx: RenderContext) => RenderedKernel };

/** Instruction-set variants of a target (the C ISAs), named by `--isa` and the `isa` knob. */
export interface TargetVariants extends CpuVariants {
  /** Every variant the target renders, best first. */
  all: readonly string[];
  /** What a device needs to offer `variant`, and how it runs on this machine, for messages. */
  describe(variant: string): string;
}

/**
 * A kgen target: its planners (one per op kind it plans), its backend (what it renders and runs;
 * absent while it only plans), its default device and, for CPU targets, its variants. One line
 * in src/backends/registry.ts registers it.
 */
export interface Target {
  name: string;
  /** How messages name it ("C", "CUDA"). */
  title: string;
  /** The device `--device` defaults to. */
  defaultDevice: string;
  planners: { [K in OpKind]?: Planner };
  backend?: Backend;
  variants?: TargetVariants;
  /** Device features the target's kernels need, checked with the request (`checkSupport`). */
  needs?: readonly DeviceNeed[];
  /**
   * What a measurement of this target's kernels on `device` depends on beyond the profile (the
   * tuner's records key on it); `space` is the tuned space (its variants name the compilers).
   */
  fingerprint?(device: DeviceProfile, space: SearchSpace, gpus: GpuDetection): Promise<Fingerprint>;
  /**
   * This machine's memory read bandwidth in GB/s with `threads` threads, measured with the
   * target's own probe, for the tuner's roofline where the profile only estimates it (`host`).
   */
  measureBandwidth?(cacheDir: string, threads: number): Promise<number | undefined>;
  /**
   * Results of the target's emitted run kit, measured on a machine without kgen (CUDA's run.sh):
   * the `format` its result files carry, and how one becomes a record for `kgen db import`.
   * Absent where the target's kernels ship no run kit.
   */
  runResults?: RunResultImport;
}

/**
 * What a measurement depends on, as the tuning database (src/db) files it; declared here because
 * a target's run-kit import (`RunResultImport`) produces one. Invariant: a workload's `key` is the
 * canonical hash of every field except the traffic figures, so equal workloads share one row
 * across processes and machines.
 */
export interface WorkloadInfo {
  device: string;
  fingerprint: Fingerprint;
  target: TargetName;
  op: Op;
  irHash: string;
  shape: Shape;
  /** Matmul weight format; undefined for attention. */
  weightFormat?: string;
  templateHash: string;
  kgenVersion: string;
  /** Bytes moved and arithmetic done by one call, and the device's roofline time for it. */
  bytes: number;
  flops: number;
  rooflineMs: number;
}

/** How a target's run-kit results come back (`Target.runResults`). */
export interface RunResultImport {
  /** The value of the result file's `format` field, which tells it from other JSON. */
  format: string;
  /**
   * The parsed result file as one measured workload with one trial, after checking every field
   * (a KgenError naming `import.<field>` for a file that proves nothing or belongs elsewhere).
   */
  toRecord(data: unknown, target: RunImportContext): ImportedRun;
}

/** What the registry knows of the importing target, for `RunResultImport.toRecord`. */
export interface RunImportContext {
  /** The op kinds the target's backend renders. */
  renders: readonly OpKind[];
  /**
   * The registry's `planRequest` for the target: the device checks (the device runs the target
   * and has what its kernels need) and the planner for the op's kind, as emit plans.
   */
  requestFor(r: { op: Op; shape: Shape; device: DeviceProfile }): PlanRequest;
  /** How the run's device name resolves (`getDevice`): a caller's own profiles are found only here. */
  devices: DeviceOptions;
}

/**
 * One run-kit measurement in the tuning database's terms (src/db's `WorkloadInfo` and `Trial`),
 * before the database keys it: what was measured, where and when, and its one trial.
 * Invariant: `trial.timing` is present iff `trial.status` is `ok`.
 */
export interface ImportedRun {
  /** What was measured; `measuredAt` (ISO 8601) dates the workload and the trial. */
  workload: WorkloadInfo & { measuredAt: string };
  trial: {
    /** Identifies the trial across imports: equal for the same result file. */
    uid: string;
    config: Config;
    status: TrialStatus;
    timing?: Timing;
    nmse?: number;
    maxAbsError?: number;
    error?: string;
    strategy: string;
    runner: string;
  };
}

/**
 * What identifies the machine a measurement was taken on beyond its profile name: the hardware
 * model, the ISA or compute capability, driver and compiler versions, and (every profile but
 * `host`) `profileHash`, the hash of the profile's figures it was planned on (`profileHash` in
 * src/device/profile.ts), which a record must match to count for the profile. Two trials compare
 * only when their fingerprints are equal.
 */
export type Fingerprint = Record<string, string | number | boolean>;

/** A device feature a target's kernels need: a name for messages and a test on the profile. */
export interface DeviceNeed {
  feature: string;
  has(device: DeviceProfile): boolean;
}

/** Rendered source files by name, plus what the manifest says about them. */
export interface RenderedKernel {
  files: Record<string, string>;
  /** Entry points and their C (or WGSL, JS) signatures, for the manifest's ABI section. */
  abi: AbiEntry[];
  /** Hash of the template text that produced the files (changes when a template changes). */
  templateHash: string;
  /** How to build the files, as the manifest states it. */
  build: string;
  /** The file `kgen emit` prints when not writing a directory (default kernel.c). */
  mainFile?: string;
  /** GPU targets: the architecture the source is for (`sm_89`). */
  arch?: string;
  /** Bytes of the workspace buffer the caller passes (targets whose entry points take one: C, WebAssembly). */
  workspaceBytes?: number;
  /** What the workspace's address must be a multiple of, in bytes (C: its f32 and int32 reads). */
  workspaceAlignment?: number;
  /**
   * C: bytes of the kernel's buffers on the stack of each thread running an entry point (kernel.h's
   * `*_STACK_BYTES`); a thread the caller creates needs that much stack beyond its own use.
   */
  threadStackBytes?: number;
  /** Targets with explicit bindings (WGSL): how to bind and dispatch the kernel. */
  bindingInterface?: BindingInterface;
  /**
   * Files that verify and the tuner build around the kernel (a test and timing harness), by name;
   * never written by `emit`. A target whose run kit ships with the kernel keeps it in `files`.
   */
  harnessFiles?: Record<string, string>;
  /**
   * Binary files built from `files` that `kgen emit -o` writes beside them (the WebAssembly
   * modules), or the builder's message; absent where the sources are the whole output.
   */
  binaries?(): Promise<{ files: Record<string, Uint8Array> } | { error: string }>;
}

/**
 * How a caller binds and dispatches a kernel of an API with explicit bindings (WebGPU), for the
 * manifest. Invariant: the figures the source was rendered with.
 */
export interface BindingInterface {
  entry: string;
  workgroupSize: [number, number, number];
  /** Workgroups per dimension: as formulas of the shape's dimensions, and as bound for this shape. */
  dispatch: { expr: [string, string, string]; grid: [number, number, number] };
  /**
   * Bindings of group 0, in binding order: storage buffers, and a run-time-length kernel's uniform
   * kv_len (`kvLength`). `tensor` names the manifest tensor it holds (`w` may span several bindings:
   * bytes [offset, offset + bytes) of the packed weights, padded with zeros past their end); `bytes`
   * is the binding's size.
   */
  bindings: { binding: number; name: string; tensor: string; access: 'read' | 'read_write' | 'uniform'; offset: number; bytes: number }[];
  /**
   * A kernel that takes its KV length at run time (attention, op.kvLength 'runtime'): the lengths a
   * call may pass, kv_len in [min, max] (max: Skv, the cache's capacity), and the uniform binding
   * (tensor `kv_len`) that holds the call's kv_len as one u32; the loader owns and writes it.
   */
  kvLength?: { min: number; max: number; binding: number };
  /**
   * Every dispatch of one call, in order, on the same bind group layout numbering (`entry`,
   * `workgroupSize` and `dispatch` above are the first's): matmul has one; split-KV decode
   * attention two (the splits, then the merge, which reads what the first wrote to `workspace`).
   * `bindings` are the binding numbers the pass's entry point uses (its bind group has those).
   */
  passes: WgslPass[];
  /** Bytes of scratch the caller binds as tensor `workspace` (written and read by the passes); absent: none. */
  workspaceBytes?: number;
  /** Optional features the device must have (`subgroups`). */
  features: string[];
  /**
   * The narrowest subgroup (lanes) the kernel is correct on, where that depends on the planned
   * profile (a scratch slot per subgroup of its smallest size): a device whose subgroups may be
   * narrower (its adapter's `subgroupMinSize`) must not run it. Absent: any subgroup size.
   */
  subgroupMinSize?: number;
  /** Limits the kernel needs, where they may exceed the spec defaults (`maxComputeWorkgroupStorageSize`, ...). */
  limits: Record<string, number>;
}

/** One dispatch of a kernel with explicit bindings: its entry point, workgroup size, grid and bindings. */
export interface WgslPass {
  entry: string;
  /** What it computes, for the manifest. */
  what: string;
  workgroupSize: [number, number, number];
  dispatch: { expr: [string, string, string]; grid: [number, number, number] };
  bindings: number[];
}

export interface AbiEntry {
  symbol: string;
  signature: string;
  doc: string;
}

/** Who asked for the source: printed into its header so it can be regenerated. */
export interface RenderContext {
  version: string;
  irHash: string;
  /** How to regenerate the source; made inert for comments by `commentText` (it may hold user text). */
  command: CommentText;
  /**
   * The base name of the kernel's symbols (a C identifier; default `kgen_<op name>`). A package
   * gives each of its kernels its own, so several shapes of one op link into one program.
   */
  symbol?: string;
}

/**
 * A target's code generation: a capability table, one renderer per plan family, and a runner. The
 * registry checks a request against `capabilities` before any renderer sees it.
 */
export interface Backend {
  capabilities: BackendCapabilities;
  renderers: Renderers;
  /**
   * What the target's compiler assigns to a rendered kernel (registers, spills, shared memory), for
   * the manifest; absent where there is nothing to ask. Slow (it compiles): emit calls it only
   * when asked.
   */
  resources?(plan: Plan, kernel: RenderedKernel): Promise<ResourceReport>;
  /**
   * The runner that builds and executes this plan's kernels here (e.g. native or qemu for a C ISA;
   * a GPU when one is present, else the CPU shim, for CUDA). Absent while a target only renders.
   */
  runnerFor?(plan: Plan, opts?: { preferReal?: boolean }): KernelRunner;
  /**
   * The files a package of this target's kernels needs at its root (a Makefile and a CMake file for
   * C; package.json and one loader of every kernel for the JS targets), how to build it and how to
   * call a kernel; absent where the target has no package form (`kgen emit --package` refuses it).
   */
  packageFiles?(kernels: readonly PackagedKernel[], pkg: PackageContext): PackageBuild;
}

/** One kernel of a package: its folder in the package, its symbol base name, plan and files. */
export interface PackagedKernel {
  dir: string;
  symbol: string;
  plan: Plan;
  rendered: RenderedKernel;
}

/** What a package is, for the files a backend adds to it. */
export interface PackageContext {
  /** The package's name (an npm package name: lowercase, URL-safe). */
  name: string;
  version: string;
}

/** What a backend adds to a package. */
export interface PackageBuild {
  /** Files at the package root, by name (Makefile, CMakeLists.txt, one header including all). */
  files: Record<string, string>;
  /** What each kernel's folder holds, for the README (one sentence or two). */
  contents: string;
  /** Shell commands that build the package where it was written, for its README. */
  build: string[];
  /** A short snippet that calls the package's first kernel, for its README. */
  usage: string;
  /** The snippet's language, for the README's code fence. */
  usageLanguage: string;
  /**
   * How the README names the call of the kernel in folder `dir` (Markdown); absent: the entry
   * point's C signature, from the kernel's manifest.
   */
  callText?(dir: string): string;
}

/**
 * The outcome of building, running and checking one config: data, never a sentinel time. A config
 * over a budget never gets this far: the plan rules it out before anything compiles (`BudgetError`
 * for a given config; counted by reason in the tuner's pruned space), so it is not a trial.
 * `unsupported`: the kernel was not built or run because this machine cannot run it (the adapter
 * lacks a feature or has narrower subgroups than the plan's, the installed nvcc does not list the
 * plan's arch); decided from the runner's own query of the machine, never from compiler text. It
 * says nothing about the config's correctness, and its error is the one-line reason.
 */
export const TRIAL_STATUSES = ['ok', 'compile_error', 'crash', 'timeout', 'wrong_result', 'unsupported'] as const;

export type TrialStatus = (typeof TRIAL_STATUSES)[number];

// One definition (src/ops/types.ts): the test data a verify draws is what a runner executes.
export type { KernelInputs };

/** The BuildOptions switches a runner's build may honour (`KernelRunner.buildFlags`). */
export type BuildFlag = 'werror' | 'sanitize';

export interface BuildOptions {
  /** Fail on compiler warnings. */
  werror?: boolean;
  /** Build with AddressSanitizer and UndefinedBehaviorSanitizer (CPU builds). */
  sanitize?: boolean;
  /** Where builds are cached by source hash; a fresh temporary directory when absent. */
  cacheDir?: string;
  timeoutMs?: number;
}

/**
 * A built kernel plus its harness, ready to execute. `status` is `ok`, `compile_error`, or
 * `unsupported` (nothing was compiled: this machine cannot run the kernel; `detail` is one line
 * saying why, `compileMs` 0); `dir` is where the binary lives (inside `cacheDir` when one was
 * given, else a temporary directory the caller removes with `dispose`).
 */
export type KernelBuild =
  | { status: 'ok'; id: string; dir: string; compileMs: number; cached: boolean; dispose(): void }
  | { status: 'compile_error' | 'unsupported'; detail: string; compileMs: number };

export interface TimingOptions {
  warmup: number;
  runs: number;
  /** Bytes of memory written between timed runs so caches start cold (0: warm caches). */
  flushBytes: number;
  /** Host threads the harness splits rows across (CPU targets). */
  threads?: number;
  /**
   * Also time a plain read (the bandwidth probe's loop) of the very copies the timed calls stream,
   * by the same threads, in rounds that alternate with the calls': the read speed of the pages the
   * kernel reads, at the same moments. Only the C attention harness has it (the bench's decode
   * rows); other runners ignore it and return no `readProbe`.
   */
  readProbe?: boolean;
  /**
   * With `readProbe`: every copy of the streamed cache on 2 MiB pages where the OS grants them
   * (transparent huge pages, asked for by `madvise`; `ReadProbeTiming.hugePageBytes` says how many
   * bytes got them), as an engine that allocates its KV cache so would run. Off: the C library's
   * allocation (4 KiB pages unless THP is "always"). Only the C attention harness has it.
   */
  hugePages?: boolean;
}

/** The same-memory read probe of a timed run (`TimingOptions.readProbe`): its times, and the bytes one read covers. */
export interface ReadProbeTiming {
  timing: Timing;
  bytes: number;
  /** With `TimingOptions.hugePages`: bytes of the harness process on huge pages (AnonHugePages); undefined where the OS does not say. */
  hugePageBytes?: number;
}

/** Wall-clock times of repeated runs, in milliseconds. Only an `ok` execution has one. */
export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** (p90 - p10) / median: the spread the tuner uses to judge noise. */
  spread: number;
  runs: number;
}

/** The outcome of executing a build once: its output bytes, and its timing when asked. */
export type KernelExecution =
  | { status: 'ok'; output: Uint8Array; timing?: Timing; readProbe?: ReadProbeTiming; runMs: number }
  | { status: 'crash' | 'timeout'; detail: string; runMs: number };

/**
 * Builds and executes rendered kernels of one target on this machine (natively, under an
 * emulator, through the CUDA CPU shim or on a GPU). verify and the tuner talk to every target
 * through this interface. Invariant: `build` and `execute` never throw for a bad kernel; a bad
 * kernel is a status. They throw only for a missing tool (ToolMissingError) or a bad request.
 */
export interface KernelRunner {
  /** What executes the kernel here, for messages and records: "native", "qemu-aarch64", ... */
  name: string;
  /** Undefined when kernels of this plan can execute here; else why only building is possible. */
  cannotExecute(plan: Plan): string | undefined;
  /** True when `execute` timings reflect the real device (false for emulators and shims). */
  timesAreReal: boolean;
  /**
   * The BuildOptions switches `build` honours; absent: none (an in-process assembler, a shader
   * compiler with nothing to sanitize). verify refuses a switch the runner would ignore, rather
   * than report a sanitized or warning-free build that never happened.
   */
  buildFlags?: readonly BuildFlag[];
  /**
   * Throws a KgenError (field `--threads`) when timed runs cannot take `threads` host threads; absent
   * where any count is taken. The tuner asks before it registers a workload, so a refused
   * `--threads` leaves nothing in the database.
   */
  checkTimedThreads?(threads: number): void;
  build(plan: Plan, kernel: RenderedKernel, opts?: BuildOptions): Promise<KernelBuild>;
  execute(build: Extract<KernelBuild, { status: 'ok' }>, inputs: KernelInputs, opts?: { timeoutMs?: number; timing?: TimingOptions }): Promise<KernelExecution>;
}
