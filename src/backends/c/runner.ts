import { join } from 'node:path';
import { execa } from 'execa';
import { hostIsa } from '../../device/host.js';
import type { Plan } from '../../plan/types.js';
import { HARNESS_EXIT, sourceKey, streamedBytes, weightCopies } from '../harness.js';
import { cachedBuild, runHarness, SANITIZER_ENV } from '../runner-core.js';
import { templateSet } from '../../render/templates.js';
import { requireTool } from '../tools.js';
import type { BuildOptions, KernelBuild, KernelExecution, KernelInputs, KernelRunner, RenderedKernel, TimingOptions } from '../types.js';
import type { CToolchain } from './toolchain.js';
import { C_TOOLCHAINS, C_WARNINGS } from './toolchain.js';

/** Why this machine cannot run binaries of this ISA, or undefined when it can (natively, through its stand-in build, or under qemu-user). */
export function cannotRunReason(isa: string): string | undefined {
  const tc = C_TOOLCHAINS[isa]!;
  // Under qemu-user (a missing qemu is reported as a missing tool), or through the stand-in build.
  return emulated(tc) || standInOf(tc) ? undefined : cannotRunNativelyReason(isa);
}

/**
 * Why this machine cannot run the variant's own build natively (what a bench times), or undefined:
 * it lacks the variant's features (even where verify runs its stand-in build), or runs it under an
 * emulator.
 */
export function cannotRunNativelyReason(isa: string): string | undefined {
  const tc = C_TOOLCHAINS[isa]!;
  if (emulated(tc)) return `it runs under ${tc.runner![0]} here`;
  const missing = missingFeatures(tc.needs);
  if (!missing.length) return undefined;
  const standIn = standInOf(tc);
  return `this CPU lacks ${missing.join(', ')}${standIn ? ` (verify runs its code through the ${standIn.label} build, whose times are not its own)` : ''}`;
}

function missingFeatures(needs: readonly string[]): string[] {
  const host = hostIsa();
  return needs.filter((f) => !host.isa.includes(f));
}

/** The variant's stand-in build where this CPU runs it and not the variant's own (toolchain `standIn`), else undefined. */
function standInOf(tc: CToolchain): CToolchain['standIn'] {
  if (!tc.standIn || emulated(tc) || missingFeatures(tc.needs).length === 0) return undefined;
  return missingFeatures(tc.standIn.needs).length === 0 ? tc.standIn : undefined;
}

const INSTALL_HINT: Record<string, string> = {
  gcc: 'install a C compiler (Debian: apt-get install gcc)',
  'aarch64-linux-gnu-gcc': 'install the cross compiler (Debian: apt-get install gcc-aarch64-linux-gnu)',
  'qemu-aarch64': 'install qemu-user (Debian: apt-get install qemu-user)',
};

/** Whether this machine runs the variant's binaries under an emulator (another architecture). */
export function emulated(tc: CToolchain): boolean {
  return tc.runner !== undefined && hostIsa().arch !== tc.arch;
}

/** Throws ToolMissingError when the compiler (or, when running, the emulator) is absent. */
export async function checkTools(tc: CToolchain, run: boolean): Promise<void> {
  const tools = [tc.compiler, ...(run && emulated(tc) ? [tc.runner![0]!] : [])];
  for (const t of tools) await requireTool(t, INSTALL_HINT[t] ?? `install ${t}`);
}

/**
 * Builds kernel.c with the rendered harness by the ISA's real compiler and executes it natively or
 * under qemu-user. Builds are cached by source hash when `cacheDir` is given: equal sources (configs
 * that render the same code) compile once.
 */
export function cRunner(isa: string): KernelRunner {
  const tc = C_TOOLCHAINS[isa]!;
  const standIn = standInOf(tc);
  return {
    name: emulated(tc) ? tc.runner![0]! : standIn ? `native (${standIn.label})` : 'native',
    timesAreReal: !emulated(tc) && !standIn,
    buildFlags: ['werror', 'sanitize'],
    cannotExecute: () => cannotRunReason(isa),
    async build(plan: Plan, kernel: RenderedKernel, opts: BuildOptions = {}): Promise<KernelBuild> {
      await checkTools(tc, false);
      // ASan's runtime is not linked statically; -static only serves qemu runs.
      const flagsOf = (own: string[]) => {
        const flags = [...(opts.sanitize ? own.filter((f) => f !== '-static') : own), ...C_WARNINGS, ...(opts.werror ? ['-Werror'] : []), '-pthread'];
        if (opts.sanitize) flags.push('-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer', '-g');
        return flags;
      };
      const flags = flagsOf(tc.flags);
      // With a stand-in the kernel compiles with the variant's own flags first (what ships), then
      // the harness is built with the stand-in's.
      const runFlags = standIn ? flagsOf(standIn.flags) : flags;
      const sources = { 'kernel.c': kernel.files['kernel.c']!, 'kernel.h': kernel.files['kernel.h']!, ...kernel.harnessFiles };
      const timeoutMs = opts.timeoutMs ?? 120_000;
      const compiled = (cc: { exitCode?: number; timedOut: boolean; all?: string }) =>
        cc.exitCode === 0 ? undefined : { error: cc.timedOut ? `compiler timed out after ${timeoutMs} ms` : (cc.all ?? '') };
      return cachedBuild({
        cacheDir: opts.cacheDir,
        id: sourceKey(sources, standIn ? [...flags, ...runFlags] : flags),
        tempPrefix: 'kgen-c-',
        sources,
        products: ['harness'],
        async compile(dir, temp) {
          if (standIn) {
            const own = compiled(await execa(tc.compiler, [...flags, '-c', '-o', '/dev/null', join(dir, 'kernel.c')], { reject: false, all: true, timeout: timeoutMs }));
            if (own) return own;
          }
          return compiled(await execa(tc.compiler, [...runFlags, '-o', temp('harness'), join(dir, 'harness.c'), join(dir, 'kernel.c'), '-lm'], { reject: false, all: true, timeout: timeoutMs })) ?? {};
        },
      });
    },
    async execute(build, inputs: KernelInputs, opts: { timeoutMs?: number; timing?: TimingOptions } = {}): Promise<KernelExecution> {
      await checkTools(tc, true);
      const bin = join(build.dir, 'harness');
      const t = opts.timing;
      // Only the attention harness (the one whose inputs hold a KV cache) takes the read probe's
      // argument, and after it the pages' (1: huge pages).
      const readProbe = t?.readProbe === true && inputs['k.bin'] !== undefined;
      const probeArgs = readProbe ? ['1', ...(t?.hugePages ? ['1'] : [])] : [];
      return runHarness({
        command: emulated(tc) ? [...tc.runner!, bin] : [bin],
        args: (dataDir) => [dataDir, '3', ...(t ? [String(t.warmup), String(t.runs), String(weightCopies(t, streamedBytes(inputs))), String(t.threads ?? 1), ...probeArgs] : [])],
        inputs,
        timeoutMs: opts.timeoutMs,
        timed: t !== undefined,
        readProbe,
        // Sanitizers are built with -fno-sanitize-recover, so any report ends the run with a failing exit.
        env: SANITIZER_ENV,
        tempPrefix: 'kgen-run-',
        name: 'the harness',
      });
    },
  };
}

/**
 * harness_io.h: the harnesses' checked allocation, input reading and timing helpers (kg_alloc,
 * read_file, now_ms, cmp_double; templates/c/harness_io.hbs) with kgen's harness exit codes, for a C
 * program outside the templates (bench/ab-attention.c); needs <stdio.h>, <stdlib.h> and <time.h>.
 */
export function harnessIoSource(): string {
  return templateSet('c').render('harness_io', { harnessExit: HARNESS_EXIT });
}
