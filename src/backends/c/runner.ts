import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { hostIsa } from '../../device/host.js';
import { ToolMissingError } from '../../errors.js';
import type { Plan } from '../../plan/types.js';
import { HARNESS_EXIT, outOfMemoryError, parseTimesLine, sourceKey } from '../harness.js';
import type { BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';
import type { CToolchain } from './toolchain.js';
import { renderHarness } from './index.js';
import { C_TOOLCHAINS, C_WARNINGS } from './toolchain.js';

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

const toolCache = new Map<string, boolean>();

async function have(tool: string): Promise<boolean> {
  let found = toolCache.get(tool);
  if (found === undefined) {
    found = (await execa('sh', ['-c', `command -v ${tool}`], { reject: false })).exitCode === 0;
    toolCache.set(tool, found);
  }
  return found;
}

const INSTALL_HINT: Record<string, string> = {
  gcc: 'install a C compiler (Debian: apt-get install gcc)',
  'aarch64-linux-gnu-gcc': 'install the cross compiler (Debian: apt-get install gcc-aarch64-linux-gnu)',
  'qemu-aarch64': 'install qemu-user (Debian: apt-get install qemu-user)',
};

function emulated(tc: CToolchain): boolean {
  return tc.runner !== undefined && hostIsa().arch !== tc.arch;
}

/** Throws ToolMissingError when the compiler (or, when running, the emulator) is absent. */
export async function checkTools(tc: CToolchain, run: boolean): Promise<void> {
  const tools = [tc.compiler, ...(run && emulated(tc) ? [tc.runner![0]!] : [])];
  for (const t of tools) if (!(await have(t))) throw new ToolMissingError(t, INSTALL_HINT[t] ?? `install ${t}`);
}

/**
 * Builds kernel.c with the rendered harness by the ISA's real compiler and executes it natively or
 * under qemu-user. Builds are cached by source hash when `cacheDir` is given: equal sources (configs
 * that render the same code) compile once.
 */
export function cRunner(isa: string): KernelRunner {
  const tc = C_TOOLCHAINS[isa]!;
  return {
    name: emulated(tc) ? tc.runner![0]! : 'native',
    timesAreReal: !emulated(tc),
    cannotExecute: () => cannotRunReason(isa),
    async build(plan: Plan, kernel: RenderedKernel, opts: BuildOptions = {}): Promise<KernelBuild> {
      await checkTools(tc, false);
      const harness = renderHarness(plan);
      // ASan's runtime is not linked statically; -static only serves qemu runs.
      const base = opts.sanitize ? tc.flags.filter((f) => f !== '-static') : tc.flags;
      const flags = [...base, ...C_WARNINGS, ...(opts.werror ? ['-Werror'] : []), '-pthread'];
      if (opts.sanitize) flags.push('-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer', '-g');
      const id = sourceKey({ 'kernel.c': kernel.files['kernel.c']!, 'kernel.h': kernel.files['kernel.h']!, 'harness.c': harness }, flags);
      const dir = opts.cacheDir ? join(opts.cacheDir, id) : mkdtempSync(join(tmpdir(), 'kgen-c-'));
      const dispose = () => {
        if (!opts.cacheDir) rmSync(dir, { recursive: true, force: true });
      };
      const bin = join(dir, 'harness');
      if (opts.cacheDir && existsSync(bin)) return { status: 'ok', id, dir, compileMs: 0, cached: true, dispose };
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'kernel.c'), kernel.files['kernel.c']!);
      writeFileSync(join(dir, 'kernel.h'), kernel.files['kernel.h']!);
      writeFileSync(join(dir, 'harness.c'), harness);
      const t0 = performance.now();
      // Compile to a private name, then rename: a concurrent build of the same source never sees a half-written binary.
      const tmpBin = `${bin}.${process.pid}.${Math.random().toString(36).slice(2)}`;
      const cc = await execa(tc.compiler, [...flags, '-o', tmpBin, join(dir, 'harness.c'), join(dir, 'kernel.c'), '-lm'], {
        reject: false,
        all: true,
        timeout: opts.timeoutMs ?? 120_000,
      });
      const compileMs = performance.now() - t0;
      if (cc.exitCode !== 0) {
        rmSync(tmpBin, { force: true });
        dispose();
        return { status: 'compile_error', detail: cc.timedOut ? `compiler timed out after ${opts.timeoutMs ?? 120_000} ms` : (cc.all ?? ''), compileMs };
      }
      renameSync(tmpBin, bin);
      return { status: 'ok', id, dir, compileMs, cached: false, dispose };
    },
    async execute(build, inputs: KernelInputs, opts: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      await checkTools(tc, true);
      const dataDir = mkdtempSync(join(tmpdir(), 'kgen-run-'));
      try {
        for (const [name, bytes] of Object.entries(inputs)) writeFileSync(join(dataDir, name), bytes);
        const bin = join(build.dir, 'harness');
        const cmd = emulated(tc) ? [...tc.runner!, bin] : [bin];
        const args = [...cmd.slice(1), dataDir, '3'];
        const t = opts.timing;
        if (t) args.push(String(t.warmup), String(t.runs), String(copiesFor(t, inputs['w.bin']?.length ?? 0)), String(t.threads ?? 1));
        const timeoutMs = opts.timeoutMs ?? 120_000;
        const t1 = performance.now();
        const run = await execa(cmd[0]!, args, {
          reject: false,
          all: true,
          timeout: timeoutMs,
          env: { ASAN_OPTIONS: 'detect_leaks=1', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' },
        });
        const runMs = performance.now() - t1;
        if (run.timedOut) return { status: 'timeout', detail: `no result after ${timeoutMs} ms`, runMs };
        // Sanitizers are built with -fno-sanitize-recover, so any report ends the run with a failing exit.
        if (run.exitCode === HARNESS_EXIT.outOfMemory) throw outOfMemoryError(run.stderr ?? '');
        if (run.exitCode !== 0) {
          return { status: 'crash', detail: `${run.exitCode === undefined ? `signal ${run.signal}` : `exit ${run.exitCode}`}: ${run.all ?? ''}`.trim(), runMs };
        }
        const output = new Uint8Array(readFileSync(join(dataDir, 'y.bin')));
        if (!t) return { status: 'ok', output, runMs };
        const timing = parseTimesLine(run.stdout ?? '');
        if (!timing) return { status: 'crash', detail: `the harness printed no timing line: ${run.all ?? ''}`, runMs };
        return { status: 'ok', output, runMs, timing };
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** Weight copies so that the copies together exceed `flushBytes` (at most 64 copies, 2 GiB). */
function copiesFor(t: TimingOptions, weightBytes: number): number {
  if (t.flushBytes <= 0 || weightBytes <= 0) return 1;
  return Math.max(1, Math.min(64, Math.ceil(t.flushBytes / weightBytes) + 1, Math.floor(2 ** 31 / weightBytes)));
}
