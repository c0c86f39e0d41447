import type { TargetName } from '../device/profile.js';
import type { OpKind, WeightFormatName } from '../ir/types.js';
import type { CommentText } from '../render/comment-text.js';
import type { Plan } from '../plan/types.js';

/** What a backend can render; checked before rendering so a gap is a clear error, not a crash. */
export interface BackendCapabilities {
  ops: readonly OpKind[];
  formats: readonly WeightFormatName[];
  /** Instruction-set variants (C) or none. */
  isas: readonly string[];
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
  /**
   * Files that verify and the tuner build around the kernel (a test and timing harness), by name;
   * never written by `emit`. A target whose run kit ships with the kernel keeps it in `files`.
   */
  harnessFiles?: Record<string, string>;
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
}

/**
 * A code generation target: a small interface plus a capability table. Adding a target is one
 * folder under src/backends, one under templates, and one line in the registry.
 */
export interface Backend {
  target: TargetName;
  capabilities: BackendCapabilities;
  render(plan: Plan, ctx: RenderContext): RenderedKernel;
  /**
   * The runner that builds and executes this plan's kernels here (e.g. native or qemu for a C ISA;
   * a GPU when one is present, else the CPU shim, for CUDA). Absent while a target only renders.
   */
  runnerFor?(plan: Plan, opts?: { preferReal?: boolean }): KernelRunner;
}

/**
 * The outcome of building and running one kernel: data, never a sentinel time. `over_budget` is
 * decided by the plan before anything compiles; the others by compiling, running and comparing.
 */
export type TrialStatus = 'ok' | 'over_budget' | 'compile_error' | 'crash' | 'timeout' | 'wrong_result';

/** Inputs of one kernel run as files a harness reads: name (x.bin, w.bin, ...) -> bytes. */
export type KernelInputs = Record<string, Uint8Array>;

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
 * A built kernel plus its harness, ready to execute. `status` is `ok` or `compile_error`; `dir` is
 * where the binary lives (inside `cacheDir` when one was given, else a temporary directory the
 * caller removes with `dispose`).
 */
export type KernelBuild =
  | { status: 'ok'; id: string; dir: string; compileMs: number; cached: boolean; dispose(): void }
  | { status: 'compile_error'; detail: string; compileMs: number };

export interface TimingOptions {
  warmup: number;
  runs: number;
  /** Bytes of memory written between timed runs so caches start cold (0: warm caches). */
  flushBytes: number;
  /** Host threads the harness splits rows across (CPU targets). */
  threads?: number;
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
  | { status: 'ok'; output: Uint8Array; timing?: Timing; runMs: number }
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
  build(plan: Plan, kernel: RenderedKernel, opts?: BuildOptions): Promise<KernelBuild>;
  execute(build: Extract<KernelBuild, { status: 'ok' }>, inputs: KernelInputs, opts?: { timeoutMs?: number; timing?: TimingOptions }): Promise<KernelExecution>;
}
