import { join } from 'node:path';
import { execa } from 'execa';
import { detectMachine, hostIsa } from '../../device/host.js';
import { CPU_CACHE_LINE_BYTES } from '../../device/profile.js';
import { textHash } from '../../hash.js';
import { templateSet } from '../../render/templates.js';
import { cachedBuild } from '../runner-core.js';
import { hasTool } from '../tools.js';

/**
 * Probe processes the tuner's roofline takes the best of. A VM's read speed is drawn per process
 * (the same kernel read at 23.5 or 30 GB/s from one process to the next on a 2-vCPU Zen 4), and
 * the tuner runs each trial in a process of its own: one probe process put a q4 GEMV at 129% of
 * its roofline.
 */
const PROBE_PROCESSES = 3;

/**
 * This machine's read bandwidth in GB/s with `threads` threads, measured by the C target's probe
 * (templates/c/probe.c.hbs: 256-bit loads over a buffer far larger than the caches): the best of
 * PROBE_PROCESSES processes' medians, or undefined where it cannot run (no AVX2, no gcc). The
 * detected host profile's bandwidth is only an estimate; the tuner's roofline uses this figure.
 */
export async function measureReadBandwidth(cacheDir: string, threads: number, mib = probeMiB()): Promise<number | undefined> {
  if (!hostIsa().isa.includes('avx2')) return undefined;
  const source = probeSource();
  if (!(await hasTool('gcc'))) return undefined;
  const build = await cachedBuild({
    cacheDir,
    id: `probe-${textHash(source)}`,
    tempPrefix: 'kgen-probe-',
    sources: { 'probe.c': source },
    products: ['probe'],
    async compile(dir, temp) {
      const cc = await execa('gcc', ['-O3', '-mavx2', '-pthread', join(dir, 'probe.c'), '-o', temp('probe')], { reject: false, all: true });
      return cc.exitCode === 0 ? {} : { error: cc.all ?? '' };
    },
  });
  if (build.status !== 'ok') return undefined;
  const bin = join(build.dir, 'probe');
  let best: number | undefined;
  for (let i = 0; i < PROBE_PROCESSES; i++) {
    const run = await execa(bin, [String(mib), '5', String(threads)], { reject: false, timeout: 60_000 });
    if (run.exitCode !== 0) return undefined;
    const line = run.stdout.split('\n').find((l) => l.startsWith('{'));
    if (!line) return undefined;
    const { gbps } = JSON.parse(line) as { gbps: number };
    best = Math.max(best ?? 0, gbps);
  }
  return best;
}

/**
 * The read loop's parameters (templates/c/read_probe.hbs), for the machine probe and the harnesses'
 * same-memory probes alike: 8 streams a thread (a GEMV reads 8 weight rows at once; one stream leaves
 * too few misses in flight on a virtualised host), each prefetched a 4 KiB page ahead, a line at a
 * time (one thread on a Zen 4 VM: 19.3-20.5 GB/s without, 25.6-28.2 with; 2 KiB ahead the same,
 * 8-16 KiB less).
 */
export const READ_PROBE = { streams: 8, prefetchBytes: 4096, cacheLine: CPU_CACHE_LINE_BYTES } as const;

/** probe.c: the bandwidth probe's source, the same for the tuner's roofline and the bench. */
export function probeSource(): string {
  return templateSet('c').render('probe.c', { readProbe: READ_PROBE });
}

/**
 * read_probe.h: the probe's read loop alone (`kg_read_range`), for a C program outside the
 * templates that times a plain read of its own buffers (bench/harness.c); needs <stdint.h> and
 * <string.h> before it.
 */
export function readProbeSource(): string {
  return templateSet('c').render('read_probe', { readProbe: READ_PROBE });
}

/** Buffer the probe reads: 512 MiB, or 3x this machine's L3 where that is larger (a VM may report 300 MiB). */
function probeMiB(): number {
  return Math.max(512, Math.ceil((3 * (detectMachine().cpu?.l3Bytes ?? 0)) / 2 ** 20));
}
