import { rmSync, writeFileSync } from 'node:fs';
import { makeTempDir } from '../../io/temp-dirs.js';
import { join } from 'node:path';
import { execa } from 'execa';
import { nvccArchs, nvccVersion, requireTool } from '../tools.js';
import type { RenderedKernel } from '../types.js';

/**
 * What ptxas assigned to an emitted kernel (`nvcc -cubin -Xptxas -v`). `sharedBytes` is static
 * shared memory only: a plan over the static limit uses dynamic shared memory, which ptxas does
 * not see (there the figure is 0 and the plan's dynamic size is checked by running in the shim).
 */
export interface PtxasReport {
  source: 'ptxas';
  /** nvcc's release, e.g. "13.0". */
  nvcc: string;
  arch: string;
  /** The kernel's mangled entry name. */
  entry: string;
  registers: number;
  spillStores: number;
  spillLoads: number;
  stackBytes: number;
  sharedBytes: number;
  compileMs: number;
}

/**
 * `report` is the first entry ptxas compiled; `entries` every one (a split-KV decode kernel.cu has
 * two). `arch_unsupported`: this nvcc's own list of architectures lacks the arch, so nothing was
 * compiled. `compile_error`: nvcc refused the source; `archsListed` false when this nvcc could not
 * list its architectures, so an arch it lacks cannot be told from a fault in the kernel.
 */
export type PtxasResult =
  | { status: 'ok'; report: PtxasReport; entries: PtxasEntry[] }
  | { status: 'arch_unsupported'; detail: string; nvcc: string; supported: string[] }
  | { status: 'compile_error'; detail: string; archsListed: boolean };

/** Options of a ptxas check: the arch to compile for and the nvcc to use. */
export interface PtxasOptions {
  arch: string;
  /** nvcc command (default `nvcc` on PATH). */
  nvcc?: string;
  /** Treat every nvcc warning as an error (`-Werror all-warnings`). */
  werror?: boolean;
  timeoutMs?: number;
}

/** What ptxas reports about one entry function. */
export type PtxasEntry = Omit<PtxasReport, 'source' | 'nvcc' | 'arch' | 'compileMs'>;

/** Parses ptxas's -v report: one record per entry function, in the order ptxas compiled them. */
export function parsePtxasEntries(text: string): PtxasEntry[] {
  return text.split(/(?=Compiling entry function ')/).flatMap((part) => {
    const entry = /Compiling entry function '([^']+)'/.exec(part);
    const used = /Used (\d+) registers/.exec(part);
    if (!entry || !used) return [];
    const frame = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(part);
    const smem = /(\d+) bytes smem/.exec(part);
    return [{
      entry: entry[1]!,
      registers: Number(used[1]),
      stackBytes: frame ? Number(frame[1]) : 0,
      spillStores: frame ? Number(frame[2]) : 0,
      spillLoads: frame ? Number(frame[3]) : 0,
      sharedBytes: smem ? Number(smem[1]) : 0,
    }];
  });
}

/** Parses ptxas's -v report of a single-kernel compile; undefined when it names no entry function. */
export function parsePtxasReport(text: string): PtxasEntry | undefined {
  return parsePtxasEntries(text)[0];
}

/** nvcc's release ("13.0") from its full version ("13.0.88"). */
async function nvccRelease(nvcc: string): Promise<string> {
  const v = await nvccVersion(nvcc);
  return /^\d+\.\d+/.exec(v)?.[0] ?? v;
}

/**
 * Compiles an emitted kernel.cu to a cubin for `opts.arch` and returns what ptxas reports. An arch
 * missing from nvcc's list (`nvcc --list-gpu-code`) is `arch_unsupported` before any compile; a
 * source nvcc refuses is a `compile_error` with its output; a missing nvcc throws ToolMissingError.
 */
export async function ptxasCheck(kernel: RenderedKernel, opts: PtxasOptions): Promise<PtxasResult> {
  const nvcc = opts.nvcc ?? 'nvcc';
  await requireTool(nvcc, 'install the CUDA toolkit (nvcc), or skip the resource check');
  const archs = await nvccArchs(nvcc);
  if (archs.status === 'listed' && !archs.archs.includes(opts.arch)) {
    return { status: 'arch_unsupported', nvcc: archs.version, supported: archs.archs, detail: `nvcc ${archs.version} builds for ${archs.archs.join(', ')}; not ${opts.arch}` };
  }
  const dir = makeTempDir('kgen-ptxas-');
  try {
    writeFileSync(join(dir, 'kernel.cu'), kernel.files['kernel.cu']!);
    writeFileSync(join(dir, 'kernel.h'), kernel.files['kernel.h']!);
    const t0 = performance.now();
    const args = ['-cubin', `-arch=${opts.arch}`, '-std=c++17', '-O3', '-Xptxas', '-v', ...(opts.werror ? ['-Werror', 'all-warnings'] : []), '-o', join(dir, 'kernel.cubin'), join(dir, 'kernel.cu')];
    const r = await execa(nvcc, args, { reject: false, all: true, timeout: opts.timeoutMs ?? 120_000 });
    const compileMs = performance.now() - t0;
    const archsListed = archs.status === 'listed';
    if (r.exitCode !== 0) return { status: 'compile_error', detail: r.timedOut ? 'nvcc timed out' : (r.all ?? ''), archsListed };
    const entries = parsePtxasEntries(r.all ?? '');
    if (!entries.length) return { status: 'compile_error', detail: `ptxas reported no kernel: ${r.all ?? ''}`, archsListed };
    return { status: 'ok', report: { source: 'ptxas', nvcc: await nvccRelease(nvcc), arch: opts.arch, ...entries[0]!, compileMs }, entries };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
