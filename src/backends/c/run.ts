import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { MatmulData } from '../../api/data.js';
import { hostIsa } from '../../device/host.js';
import { ToolMissingError } from '../../errors.js';
import type { TrialStatus } from '../types.js';
import type { CToolchain } from './toolchain.js';
import { C_TOOLCHAINS, C_WARNINGS } from './toolchain.js';

export interface CRunOptions {
  /** Build with -fsanitize=address,undefined and fail on any report. */
  sanitize?: boolean;
  /** Treat warnings as errors. */
  werror?: boolean;
  /** Row ranges the harness splits N into (exercises the row-range API). */
  splits?: number;
  timeoutMs?: number;
  /** Keep the build directory (its path is returned) instead of deleting it. */
  keepDir?: boolean;
}

export interface CRunResult {
  status: Exclude<TrialStatus, 'over_budget' | 'wrong_result'>;
  /** Raw Y bytes, when the run finished. */
  output?: Uint8Array;
  /** Compiler or runtime text for a failure. */
  detail?: string;
  /** True when the binary was built but this machine cannot run it (e.g. AVX-512 elsewhere). */
  compiledOnly?: boolean;
  compileMs: number;
  runMs: number;
  dir?: string;
}

/** Why this machine cannot run binaries of this ISA, or undefined when it can. */
export function cannotRunReason(isa: string): string | undefined {
  const tc = C_TOOLCHAINS[isa]!;
  const host = hostIsa();
  if (tc.arch === 'aarch64' && host.arch !== 'aarch64') {
    return undefined; // runs under qemu-user; a missing qemu is reported as a missing tool
  }
  const missing = tc.needs.filter((f) => !host.isa.includes(f));
  return missing.length ? `this CPU lacks ${missing.join(', ')}` : undefined;
}

async function have(tool: string): Promise<boolean> {
  try {
    await execa('sh', ['-c', `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

const INSTALL_HINT: Record<string, string> = {
  gcc: 'install a C compiler (Debian: apt-get install gcc)',
  'aarch64-linux-gnu-gcc': 'install the cross compiler (Debian: apt-get install gcc-aarch64-linux-gnu)',
  'qemu-aarch64': 'install qemu-user (Debian: apt-get install qemu-user)',
};

/** Throws ToolMissingError when the compiler (or, when running, the emulator) is absent. */
export async function checkTools(tc: CToolchain, run: boolean): Promise<void> {
  const tools = [tc.compiler, ...(run && tc.runner && hostIsa().arch !== tc.arch ? [tc.runner[0]!] : [])];
  for (const t of tools) if (!(await have(t))) throw new ToolMissingError(t, INSTALL_HINT[t] ?? `install ${t}`);
}

/**
 * Compiles kernel.c with the harness using the ISA's real compiler and runs it on `data`
 * (natively, or under qemu for NEON). Returns a status, never throws for a bad kernel.
 */
export async function compileAndRun(isa: string, files: { kernelC: string; kernelH: string; harnessC: string }, data: MatmulData, opts: CRunOptions = {}): Promise<CRunResult> {
  const tc = C_TOOLCHAINS[isa]!;
  const dir = mkdtempSync(join(tmpdir(), 'kgen-c-'));
  try {
    writeFileSync(join(dir, 'kernel.c'), files.kernelC);
    writeFileSync(join(dir, 'kernel.h'), files.kernelH);
    writeFileSync(join(dir, 'harness.c'), files.harnessC);
    writeFileSync(join(dir, 'x.bin'), data.x.bytes);
    writeFileSync(join(dir, 'w.bin'), data.w.bytes);
    if (data.bias) writeFileSync(join(dir, 'bias.bin'), data.bias.bytes);
    if (data.residual) writeFileSync(join(dir, 'residual.bin'), data.residual.bytes);
    // ASan's runtime is not linked statically; -static only serves qemu runs.
    const base = opts.sanitize ? tc.flags.filter((f) => f !== '-static') : tc.flags;
    const flags = [...base, ...C_WARNINGS, ...(opts.werror ? ['-Werror'] : [])];
    if (opts.sanitize) flags.push('-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer', '-g');
    const bin = join(dir, 'harness');
    const t0 = performance.now();
    const cc = await execa(tc.compiler, [...flags, '-o', bin, join(dir, 'harness.c'), join(dir, 'kernel.c'), '-lm'], { reject: false, all: true, timeout: 120_000 });
    const compileMs = performance.now() - t0;
    if (cc.exitCode !== 0) return { status: 'compile_error', detail: cc.all, compileMs, runMs: 0 };
    const runReason = cannotRunReason(isa);
    if (runReason) return { status: 'ok', compiledOnly: true, detail: runReason, compileMs, runMs: 0 };
    const cmd = tc.runner && hostIsa().arch !== tc.arch ? [...tc.runner, bin] : [bin];
    const t1 = performance.now();
    const run = await execa(cmd[0]!, [...cmd.slice(1), dir, String(opts.splits ?? 3)], {
      reject: false,
      all: true,
      timeout: opts.timeoutMs ?? 120_000,
      env: { ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' },
    });
    const runMs = performance.now() - t1;
    if (run.timedOut) return { status: 'timeout', detail: `no result after ${opts.timeoutMs ?? 120_000} ms`, compileMs, runMs };
    // Sanitizers are built with -fno-sanitize-recover, so any report ends the run with a failing exit.
    if (run.exitCode !== 0) {
      return { status: 'crash', detail: `${run.exitCode === undefined ? `signal ${run.signal}` : `exit ${run.exitCode}`}: ${run.all ?? ''}`.trim(), compileMs, runMs };
    }
    return { status: 'ok', output: new Uint8Array(readFileSync(join(dir, 'y.bin'))), compileMs, runMs, dir: opts.keepDir ? dir : undefined };
  } finally {
    if (!opts.keepDir) rmSync(dir, { recursive: true, force: true });
  }
}
