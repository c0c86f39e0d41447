import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { makeTempDir } from '../io/temp-dirs.js';
import { join } from 'node:path';
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { HARNESS_EXIT, outOfMemoryError, parseProbeLine, parseTimesLine } from './harness.js';
import type { KernelBuild, KernelExecution, KernelInputs } from './types.js';

/**
 * What every runner does the same way, written once: a build directory cached by source hash
 * (products renamed into place, so a concurrent builder never sees half a file), and a harness run
 * in a child process on input files, with a timeout, an out-of-memory exit that is a usage error
 * rather than a verdict, and the timing line parsed. Runners add only what differs: the compiler
 * command and the harness command line.
 */

/** A temporary name beside `path`, unique to this process and call. */
export function tempPathFor(path: string): string {
  return `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
}

/** Writes `content` to `path` through a temporary file and a rename (cache files, build inputs). */
export function writeFileReplacing(path: string, content: string | Uint8Array): void {
  const tmp = tempPathFor(path);
  try {
    writeFileSync(tmp, content);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

export interface CachedBuildOptions {
  /** Where builds are kept by `id`; a fresh temporary directory (removed by `dispose`) when absent. */
  cacheDir?: string;
  /** The build's key (`sourceKey` of its sources and flags): equal keys share one build. */
  id: string;
  /** Prefix of the temporary directory when there is no cache. */
  tempPrefix: string;
  /** Files written into the build directory before compiling. */
  sources: Record<string, string>;
  /** The files a complete build holds; renamed into place in this order, so the last marks completion. */
  products: string[];
  /**
   * Compiles in `dir`, writing each product to `temp(product)`. Returns the compiler's output as a
   * compile error, the one-line reason this machine cannot run the kernel (`unsupported`: the
   * compiler's own structured refusal, never read from its error text), or nothing on success.
   */
  compile(dir: string, temp: (product: string) => string): Promise<{ error?: string; unsupported?: string }>;
}

/**
 * Builds in a directory keyed by `id`: a cached build whose products all exist is reused;
 * otherwise the sources are written, `compile` runs, and its products are renamed into place.
 * A failed compile is a `compile_error` with the compiler's text (`unsupported` with its reason
 * where `compile` says this machine cannot run the kernel), never an exception.
 */
export async function cachedBuild(o: CachedBuildOptions): Promise<KernelBuild> {
  const dir = o.cacheDir ? join(o.cacheDir, o.id) : makeTempDir(o.tempPrefix);
  const dispose = () => {
    if (!o.cacheDir) rmSync(dir, { recursive: true, force: true });
  };
  if (o.cacheDir && o.products.every((p) => existsSync(join(dir, p)))) return { status: 'ok', id: o.id, dir, compileMs: 0, cached: true, dispose };
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(o.sources)) writeFileReplacing(join(dir, name), text);
  const temps = new Map(o.products.map((p) => [p, tempPathFor(join(dir, p))]));
  const t0 = performance.now();
  let result: { error?: string; unsupported?: string };
  try {
    result = await o.compile(dir, (p) => temps.get(p)!);
  } catch (e) {
    for (const t of temps.values()) rmSync(t, { force: true });
    dispose();
    throw e;
  }
  const compileMs = performance.now() - t0;
  if (result.error !== undefined || result.unsupported !== undefined) {
    for (const t of temps.values()) rmSync(t, { force: true });
    dispose();
    return result.unsupported !== undefined ? { status: 'unsupported', detail: result.unsupported, compileMs } : { status: 'compile_error', detail: result.error!, compileMs };
  }
  for (const [p, t] of temps) renameSync(t, join(dir, p));
  return { status: 'ok', id: o.id, dir, compileMs, cached: false, dispose };
}

/**
 * The environment of a harness built with sanitizers (harmless otherwise): leaks are reported,
 * and UBSan stops at its first finding with a stack, so any report fails the run.
 */
export const SANITIZER_ENV: Readonly<Record<string, string>> = { ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' };

/** How long one harness run may take unless the caller says otherwise. */
export const DEFAULT_RUN_TIMEOUT_MS = 120_000;

export interface HarnessRunOptions {
  /** The program and its leading arguments (an emulator or sanitizer first, when one wraps it). */
  command: string[];
  /** Arguments after the command, given the directory that holds the input files. */
  args(dataDir: string): string[];
  inputs: KernelInputs;
  /** The file the harness writes its output to, in the data directory (default `y.bin`). */
  outputFile?: string;
  /** Default `DEFAULT_RUN_TIMEOUT_MS`. */
  timeoutMs?: number;
  /** Whether a timing line is expected on stdout. */
  timed: boolean;
  /** Whether a read-probe line is expected too (`TimingOptions.readProbe`, passed on by the runner). */
  readProbe?: boolean;
  env?: Record<string, string>;
  /** Prefix of the temporary data directory. */
  tempPrefix: string;
  /** What the harness is called in messages ("the harness", "kgen_run"). */
  name: string;
  /**
   * A runner's own reading of an exit status before the common one (e.g. "no usable GPU", which is
   * the machine's problem and throws); undefined to fall through.
   */
  onExit?(exitCode: number | undefined, text: string): KernelExecution | undefined;
}

/**
 * Runs a harness once on `inputs` in a fresh data directory: a hang past `timeoutMs` is `timeout`,
 * a failing exit `crash` with the harness's output, `HARNESS_EXIT.outOfMemory` a KgenError (the
 * machine ran out, not the kernel), and a timed run without its timing line `crash`.
 */
export async function runHarness(o: HarnessRunOptions): Promise<KernelExecution> {
  const timeoutMs = o.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS;
  const dataDir = makeTempDir(o.tempPrefix);
  try {
    for (const [name, bytes] of Object.entries(o.inputs)) writeFileSync(join(dataDir, name), bytes);
    const t1 = performance.now();
    const run = await execa(o.command[0]!, [...o.command.slice(1), ...o.args(dataDir)], { reject: false, timeout: timeoutMs, env: o.env });
    const runMs = performance.now() - t1;
    if (run.timedOut) return { status: 'timeout', detail: `no result after ${timeoutMs} ms`, runMs };
    // The harness's (or a sanitizer's) messages first: they say what went wrong.
    const text = [run.stderr, run.stdout].map((t) => (t ?? '').trim()).filter(Boolean).join('\n');
    const own = o.onExit?.(run.exitCode, text);
    if (own) return own;
    if (run.exitCode === HARNESS_EXIT.outOfMemory) throw outOfMemoryError(run.stderr ?? text);
    if (run.exitCode !== 0) {
      return { status: 'crash', detail: `${run.exitCode === undefined ? `signal ${run.signal}` : `exit ${run.exitCode}`}: ${text}`.trim(), runMs };
    }
    const output = new Uint8Array(readFileSync(join(dataDir, o.outputFile ?? 'y.bin')));
    if (!o.timed) return { status: 'ok', output, runMs };
    const timing = parseTimesLine(run.stdout ?? '');
    if (!timing) return { status: 'crash', detail: `${o.name} printed no timing line: ${text}`, runMs };
    if (!o.readProbe) return { status: 'ok', output, runMs, timing };
    const readProbe = parseProbeLine(run.stdout ?? '');
    if (!readProbe) return { status: 'crash', detail: `${o.name} printed no read-probe line: ${text}`, runMs };
    return { status: 'ok', output, runMs, timing, readProbe };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}
