import { planRequest } from '../src/backends/registry.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { cannotRunReason, cRunner } from '../src/backends/c/runner.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { emit } from '../src/api/emit.js';
import { resolveRequest } from '../src/api/request.js';
import { detectMachine, forcedHost, HOST_PROFILE_VARIABLE, hostFromEnvironment, hostIsa, measuredDevice, parseGetconfCaches } from '../src/device/host.js';
import { allDevices, getDevice } from '../src/device/index.js';
import { KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import { spaceFor } from '../src/plan/index.js';
import { fingerprintFor } from '../src/tune/fingerprint.js';
import { tune } from '../src/tune/tuner.js';
import { skipReason } from './helpers.js';

/**
 * KGEN_HOST_PROFILE: `host` with another CPU profile's figures, for tests and CI. These tests set
 * the variable for each child themselves, so they hold whatever the suite runs under.
 */
const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-host-'));
const kgen = (args: string[], forced: string) =>
  execa(KGEN, args, { reject: false, env: { KGEN_DB: join(tmp(), 'none.db'), [HOST_PROFILE_VARIABLE]: forced } });

describe('the library reads no environment for host', () => {
  it('plans for this machine whatever KGEN_HOST_PROFILE says, and for a forced host only when one is passed', async () => {
    const saved = process.env[HOST_PROFILE_VARIABLE];
    process.env[HOST_PROFILE_VARIABLE] = 'epyc-9654';
    try {
      const req = { target: 'c', op: 'matmul_q4', shape: 'M=1,N=64,K=256' };
      expect(getDevice('host')).toBe(detectMachine());
      expect(allDevices()[0]).toBe(detectMachine());
      expect(resolveRequest(req).device).toBe(detectMachine());
      // The edges (the CLI, the bench, the suite's helpers) read the variable and pass the host down.
      const forced = hostFromEnvironment(process.env);
      expect(forced.host?.forcedFrom).toBe('epyc-9654');
      expect(getDevice('host', forced)).toBe(forced.host);
      expect(resolveRequest({ ...req, ...forced }).device.forcedFrom).toBe('epyc-9654');
      expect(emit({ ...req, ...forced }).plan.config).toEqual(emit({ ...req, device: 'epyc-9654' }).plan.config);
      expect(() => getDevice('host', { host: getDevice('epyc-9654') })).toThrow(/^host: a profile named "epyc-9654"; expected a profile named host/);
      // A JavaScript caller's name where a profile belongs: refused on the field, not a TypeError.
      expect(() => getDevice('host', { host: 'epyc-9654' as never })).toThrow(/^host: got "epyc-9654"; expected a device profile named host; forcedHost\("epyc-9654"\)/);
    } finally {
      if (saved === undefined) delete process.env[HOST_PROFILE_VARIABLE];
      else process.env[HOST_PROFILE_VARIABLE] = saved;
    }
    expect(hostFromEnvironment({})).toEqual({});
    expect(hostFromEnvironment({ [HOST_PROFILE_VARIABLE]: '' })).toEqual({});
    // A process started with the variable set: its first lookup of host is this machine all the same.
    const index = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'src', 'index.js')).href;
    const script = `const { getDevice } = await import(${JSON.stringify(index)}); process.stdout.write(String(getDevice('host').forcedFrom));`;
    const child = await execa(process.execPath, ['--input-type=module', '-e', script], { reject: false, env: { ...process.env, [HOST_PROFILE_VARIABLE]: 'epyc-9654' } });
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('undefined');
  });
});

describe('cache sizes where sysfs has none', () => {
  it('takes L1d and L2 from getconf, never its L3, and leaves empty or zero sizes undefined', () => {
    // `getconf -a` on a 2-vCPU EPYC VM without /sys/devices/system/cpu/cpu0/cache (its L3 figure is bogus).
    const vm = [
      'LEVEL1_ICACHE_SIZE                 32768',
      'LEVEL1_DCACHE_SIZE                 49152',
      'LEVEL1_DCACHE_ASSOC                12',
      'LEVEL2_CACHE_SIZE                  1048576',
      'LEVEL2_CACHE_LINESIZE              64',
      'LEVEL3_CACHE_SIZE                  532676608',
      'LEVEL4_CACHE_SIZE                  ',
    ].join('\n');
    expect(parseGetconfCaches(vm)).toEqual({ l1d: 49152, l2: 1048576 });
    expect(parseGetconfCaches('LEVEL1_DCACHE_SIZE                 0\nLEVEL2_CACHE_SIZE                  \n')).toEqual({});
    expect(parseGetconfCaches('')).toEqual({});
    const cpu = detectMachine().cpu!;
    expect(cpu.l1dBytes).toBeGreaterThan(0);
    expect(cpu.l2Bytes).toBeGreaterThan(0);
  });
});

describe('a forced host', () => {
  it('carries the profile\'s CPU, memory and peak figures under the name host', () => {
    for (const name of ['epyc-7763', 'epyc-9654', 'xeon-8592', 'apple-m2']) {
      const base = getDevice(name);
      const host = forcedHost(name);
      expect(host).toMatchObject({ name: 'host', kind: 'cpu', forcedFrom: name, cpu: base.cpu, memory: base.memory, peak: base.peak });
      expect(host.targets).toEqual(['c', 'wasm']);
      expect(host.match).toBeUndefined();
      // The library names no environment variable; the edge that read one does.
      expect(host.sources.host).not.toContain(HOST_PROFILE_VARIABLE);
      expect(host.description).toMatch(new RegExp(`^forced to ${name}: `));
      const fromEnv = hostFromEnvironment({ [HOST_PROFILE_VARIABLE]: name }).host!;
      expect(fromEnv.sources.host).toContain(HOST_PROFILE_VARIABLE);
      expect(fromEnv.description).toMatch(new RegExp(`^${HOST_PROFILE_VARIABLE}=${name}: `));
    }
    expect(detectMachine().forcedFrom).toBeUndefined();
  });

  it('refuses an unknown name or a profile that is not a CPU running C: the library on field host, the environment\'s reader naming the variable', () => {
    const thrown = (f: () => unknown): KgenError => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(KgenError);
        return e as KgenError;
      }
      throw new Error('nothing thrown');
    };
    for (const [name, problem] of [['nosuch', /unknown profile "nosuch"/], ['rtx4090', /"rtx4090" is a GPU profile/], ['wasm-simd128', /"wasm-simd128" is a WebAssembly profile/], ['host', /unknown profile "host"/]] as const) {
      const lib = thrown(() => forcedHost(name));
      expect(lib.field).toBe('host');
      expect(lib.message).not.toContain(HOST_PROFILE_VARIABLE);
      const edge = thrown(() => hostFromEnvironment({ [HOST_PROFILE_VARIABLE]: name }));
      expect(edge.field).toBe(HOST_PROFILE_VARIABLE);
      expect(edge.hint).toBe(`unset ${HOST_PROFILE_VARIABLE} to plan for this machine's own CPU`);
      for (const err of [lib, edge]) {
        expect(err.message).toMatch(problem);
        expect(err.expected).toMatch(/apple-m2, core-i9-13900k, epyc-7763, epyc-9654, graviton3, xeon-8592/);
      }
    }
  });

  it('kgen sees it from the environment; a bad value is one line and exit 2', async () => {
    const devices = JSON.parse((await kgen(['devices', '--json'], 'epyc-7763')).stdout) as Array<{ name: string; present: boolean; cpu: unknown; description: string }>;
    const host = devices.find((d) => d.name === 'host')!;
    expect(host).toMatchObject({ present: true, cpu: getDevice('epyc-7763').cpu });
    expect(host.description).toMatch(/^KGEN_HOST_PROFILE=epyc-7763: /);
    // Empty means unset: this machine's own figures.
    const own = JSON.parse((await kgen(['devices', '--json'], '')).stdout) as Array<{ name: string; cpu: { isa: string[] } }>;
    expect(own.find((d) => d.name === 'host')!.cpu.isa).toEqual(hostIsa().isa);
    const bad = await kgen(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=8,K=64'], 'rtx4090');
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^kgen: KGEN_HOST_PROFILE: "rtx4090" is a GPU profile, not a CPU that runs C kernels; expected a CPU profile: /);
  });

  it('plans for the profile, while this CPU decides what runs (an ISA it lacks is compiled only)', async () => {
    for (const [forced, isa] of [['epyc-9654', 'avx512'], ['epyc-7763', 'avx2'], ['apple-m2', 'neon']]) {
      const plan = await kgen(['plan', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--json'], forced!);
      expect(JSON.parse(plan.stdout).config.isa, forced).toBe(isa);
    }
    const missing = skipReason(['gcc']);
    if (missing) return;
    const r = await kgen(['verify', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--isa', 'avx512', '--json'], 'epyc-9654');
    expect(r.exitCode, r.stderr).toBe(0);
    const runs = cannotRunReason('avx512') === undefined;
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'ok', ran: runs, ...(runs ? {} : { runner: 'compile only', detail: cannotRunReason('avx512') }) });
  });

  it('is fingerprinted as forced, with this machine\'s CPU model, and timed on this machine\'s figures', async () => {
    const host = forcedHost('epyc-9654');
    const space = spaceFor(planRequest({ op: CATALOG.matmul_q4!, shape: { M: 1, N: 64, K: 256 }, device: host, target: 'c' }));
    const fp = await fingerprintFor(host, 'c', space);
    expect(fp).toMatchObject({ profile: 'host', forcedFrom: 'epyc-9654', cpu: hostIsa().model.trim(), l2Bytes: 1048576 });
    expect(await fingerprintFor(detectMachine(), 'c', space)).not.toHaveProperty('forcedFrom');
    // host's figures are detected afresh (its clock varies): its fingerprint names the CPU and no profile hash.
    expect(fp).not.toHaveProperty('profileHash');
    expect(measuredDevice(host)).toBe(detectMachine());
    expect(measuredDevice(getDevice('epyc-9654')).name).toBe('epyc-9654');
  });
});

describe.skipIf(skipReason(['gcc']) !== undefined)('tuning a forced host', () => {
  /** Two exhaustive trials of a small q4 GEMV on a host forced to epyc-9654, through `runnerFor`'s runners; the summary's result and the database. */
  const tuneForced = async (runnerFor: (plan: { params: Record<string, unknown> }) => ReturnType<typeof cRunner>) => {
    const dir = tmp();
    const db = openTuningDb(join(dir, 't.db'));
    const summary = await tune({
      db,
      device: forcedHost('epyc-9654'),
      target: 'c',
      workloads: [{ op: CATALOG.matmul_q4!, shape: { M: 1, N: 64, K: 256 } }],
      strategy: 'exhaustive',
      trials: 2,
      threads: 1,
      cacheDir: join(dir, 'cache'),
      runnerFor: runnerFor as Parameters<typeof tune>[0]['runnerFor'],
    });
    return { result: summary.results[0]!, db };
  };
  it('never times a candidate this machine cannot execute: it is pruned with the runner\'s reason', async () => {
    // As on an AVX2 machine: the AVX-512 variant cannot execute, whatever this CPU is.
    const { result, db } = await tuneForced((plan) => {
      const real = cRunner(plan.params.isa as string);
      return { ...real, cannotExecute: (p: Parameters<typeof real.cannotExecute>[0]) => (plan.params.isa === 'avx512' ? 'this CPU lacks avx512f' : real.cannotExecute(p)) };
    });
    expect(result.space.pruned['cannot execute here: this CPU lacks avx512f']).toBeGreaterThan(0);
    // The two trials, besides the final re-timing's (strategy retime) of the same configs.
    const trials = db.trials(result.workload.id).filter((t) => t.strategy !== 'retime');
    expect(trials).toHaveLength(2);
    for (const t of trials) expect(t.config.isa).not.toBe('avx512');
    expect(result.workload.fingerprint.forcedFrom).toBe('epyc-9654');
    db.close();
  });
  it('never times a candidate whose times here are not the device\'s (a stand-in build): pruned with the runner\'s name', async () => {
    // As AVX-VNNI's code on an AVX-512 VNNI CPU: it runs, through a build whose times are not its own
    // (whatever this CPU is: the stand-in says it can execute).
    const { result, db } = await tuneForced((plan) => {
      const real = cRunner(plan.params.isa as string);
      return plan.params.isa === 'avx512' ? { ...real, name: 'native (a stand-in)', timesAreReal: false, cannotExecute: () => undefined } : real;
    });
    expect(result.space.pruned["its times here are not the device's: it runs through native (a stand-in)"]).toBeGreaterThan(0);
    for (const t of db.trials(result.workload.id)) expect(t.config.isa).not.toBe('avx512');
    db.close();
  });
});
