import { planRequest } from '../src/backends/registry.js';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { cRunner } from '../src/backends/c/runner.js';
import type { KernelRunner } from '../src/backends/types.js';
import { openTuningDb } from '../src/db/sqlite.js';
import { hostIsa } from '../src/device/host.js';
import { getDevice } from '../src/device/index.js';
import { checkOwnProfile, profileHash, type DeviceProfile } from '../src/device/profile.js';
import { KgenError } from '../src/errors.js';
import { CATALOG } from '../src/ir/catalog.js';
import { Rng } from '../src/numeric/random.js';
import type { Config, Plan } from '../src/plan/types.js';
import { measureReadBandwidth, probeSource } from '../src/backends/c/bandwidth.js';
import { configHash, pruneSpace } from '../src/tune/space.js';
import { resolveStrategy, STRATEGIES } from '../src/tune/strategies/index.js';
import { RETIME_STRATEGY, timingRunner, tune, type TuneEvent } from '../src/tune/tuner.js';
import { standardWorkload } from '../src/tune/workloads.js';
import { LANDSCAPES, landscape, simSpaces, simulate } from '../bench/search-quality.js';
import { skipReason, suiteHost } from './helpers.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const tmp = () => mkdtempSync(join(tmpdir(), 'kgen-tune-'));
const host = getDevice('host', suiteHost());
// Search spaces follow the device's figures: the tests of pruning and strategies use a fixed CPU, not `host`.
const cpu = getDevice('epyc-7763');
const q4 = CATALOG.matmul_q4!;
const SMALL = { M: 1, N: 64, K: 256 };
const noGcc = skipReason(['gcc']);
// kgen tune refuses to time kernels that would run under an emulator, as host's would when
// KGEN_HOST_PROFILE gives it another architecture (apple-m2 on x86): its CLI runs skip then.
const untimedHost = ((): string | undefined => {
  const first = pruneSpace(planRequest({ op: q4, shape: SMALL, device: host, target: 'c' })).legal[0]!;
  const runner = timingRunner(first.plan);
  if (runner.timesAreReal) return undefined;
  const reason = `host's ${String(first.config.isa)} kernels would run through ${runner.name} here, and kgen tune refuses to time them`;
  console.warn(`SKIP: ${reason}`);
  return reason;
})();

describe('search space', () => {
  it('prunes by restriction and budget before compiling, counting every config once', () => {
    const s = pruneSpace(planRequest({ op: q4, shape: { M: 64, N: 77, K: 320 }, device: cpu, target: 'c' }));
    const pruned = [...s.pruned.values()].reduce((a, b) => a + b, 0);
    expect(s.legal.length + pruned).toBe(s.total);
    expect(s.pruned.get('restriction: nTile is not a multiple of rowsPerIter')).toBeGreaterThan(0);
    // 8 rows x 4 activation rows = 32 accumulators + work registers: more than any x86 register file.
    expect([...s.pruned.keys()].some((k) => k.startsWith('over budget: vector registers'))).toBe(true);
    for (const c of s.legal) expect(c.plan.budgets.every((b) => b.needed <= b.available)).toBe(true);
    expect(new Set(s.legal.map((c) => c.hash)).size).toBe(s.legal.length);
  });

  it('--config pins knobs: only matching configs stay, an unknown knob or value is refused by name', () => {
    const req = planRequest({ op: q4, shape: { M: 1, N: 77, K: 320 }, device: cpu, target: 'c' as const });
    const all = pruneSpace(req);
    const pinned = pruneSpace(req, { unroll: 2 });
    expect(pinned.legal.length).toBeGreaterThan(0);
    expect(pinned.legal.length).toBeLessThan(all.legal.length);
    expect(pinned.legal.every((c) => c.config.unroll === 2)).toBe(true);
    expect(() => pruneSpace(req, { nosuch: 1 })).toThrow(/config\.nosuch/);
    expect(() => pruneSpace(req, { unroll: 3 })).toThrow(KgenError);
  });

  it('the standard workload is the Llama-3 8B/70B layers at M = 1, 16, 256, decode first', () => {
    const w = standardWorkload();
    expect(w).toHaveLength(6 * 3 * 5);
    expect(w[0]).toMatchObject({ shape: { M: 1, N: 14336, K: 4096 } });
    expect(w.at(-1)).toMatchObject({ shape: { M: 256, N: 8192, K: 8192 } });
    expect(new Set(w.map((x) => `${(x.shape as { N: number }).N}x${(x.shape as { K: number }).K}`))).toEqual(new Set(['4096x4096', '1024x4096', '14336x4096', '4096x14336', '8192x8192', '28672x8192']));
  });
});

describe('strategies', () => {
  const s = pruneSpace(planRequest({ op: q4, shape: SMALL, device: cpu, target: 'c' }));
  for (const name of Object.keys(STRATEGIES)) {
    it(`${name} proposes legal configs, never one twice, the default first, until the space is done`, () => {
      const { strategy, options } = resolveStrategy(name);
      const search = strategy.start({ knobs: s.space.knobs, legal: s.legal.map((c) => c.config), hashOf: configHash, rng: new Rng(7), options });
      const legal = new Set(s.legal.map((c) => c.hash));
      const seen = new Set<string>();
      const rng = new Rng(3);
      let first: Config | undefined;
      for (;;) {
        const batch = search.propose(5);
        if (!batch.length) break;
        first ??= batch[0];
        for (const c of batch) {
          const h = configHash(c);
          expect(legal.has(h)).toBe(true);
          expect(seen.has(h)).toBe(false);
          seen.add(h);
          search.observe(c, rng.next() < 0.1 ? undefined : 1 + rng.next());
        }
      }
      expect(first).toEqual(s.legal[0]!.config);
      expect(seen.size).toBe(legal.size);
    });
  }

  it('the same seed proposes the same configs in the same order; another seed, another order', () => {
    const run = (name: string, seed: number) => {
      const { strategy, options } = resolveStrategy(name);
      const search = strategy.start({ knobs: s.space.knobs, legal: s.legal.map((c) => c.config), hashOf: configHash, rng: new Rng(seed), options });
      const order: string[] = [];
      for (let batch = search.propose(4); batch.length && order.length < 30; batch = search.propose(4)) {
        for (const c of batch) {
          order.push(configHash(c));
          search.observe(c, 1 + (order.length % 7));
        }
      }
      return order;
    };
    for (const name of ['random', 'evolutionary']) {
      expect(run(name, 5)).toEqual(run(name, 5));
      expect(run(name, 5)).not.toEqual(run(name, 6));
    }
  });

  it('evolutionary breeds from measured times when tune asks for a batch wider than its population', () => {
    // tune asks for 2 configs per build slot at once (32 on a 16-core machine): a strategy that filled
    // such a batch at random was random search for a 24-trial session.
    const { strategy, options } = resolveStrategy('evolutionary');
    const search = strategy.start({ knobs: s.space.knobs, legal: s.legal.map((c) => c.config), hashOf: configHash, rng: new Rng(1), options });
    expect(search.propose(32)).toHaveLength(options.population!);
    // And the same seed proposes the same configs whatever the batch (the machine's core count).
    const orderWith = (batch: number) => {
      const run = strategy.start({ knobs: s.space.knobs, legal: s.legal.map((c) => c.config), hashOf: configHash, rng: new Rng(2), options });
      const order: string[] = [];
      for (let b = run.propose(batch); b.length && order.length < 40; b = run.propose(batch)) {
        for (const c of b) {
          order.push(configHash(c));
          run.observe(c, 1 + (order.length % 5));
        }
      }
      return order;
    };
    expect(orderWith(3)).toEqual(orderWith(32));
    // Synthetic landscapes over a real 858-config space (bench/search-quality.ts), batches of 32, 24
    // trials, 12 seeds per landscape: sessions within 5% of the optimum, evolutionary 6, random 1
    // (evolutionary 1 when it filled the batch at random).
    const space = simSpaces()[1]!;
    const hits = (name: string) =>
      LANDSCAPES.reduce((n, l) => {
        for (let seed = 1; seed <= 12; seed++) if (simulate(space, landscape(space, l, seed), { strategy: name, trials: 24, batch: 32, seed }).ratio <= 1.05) n++;
        return n;
      }, 0);
    expect(hits('evolutionary')).toBeGreaterThan(2 * hits('random'));
  });

  it('options are declared: unknown names and values out of range are refused', () => {
    expect(resolveStrategy('evolutionary', { population: 16 }).options.population).toBe(16);
    expect(() => resolveStrategy('evolutionary', { populaton: 16 })).toThrow(/evolutionary has no option "populaton"; expected population/);
    expect(() => resolveStrategy('evolutionary', { mutation: 2 })).toThrow(/--strategy-opt mutation: got 2; expected a number in \[0, 1\]/);
    expect(() => resolveStrategy('annealing')).toThrow(KgenError);
  });
});

/**
 * A runner that sabotages some candidates by their config (unroll, prefetch), so every failure
 * status comes from a real compile or a real run of the real C kernel.
 */
function saboteur(plan: Plan): KernelRunner {
  const real = cRunner((plan.params as { isa: string }).isa);
  const fn = 'void kgen_matmul_q4_rows(';
  const anchor = '  const kg_act *xa = (const kg_act *)workspace;';
  const sabotage: Record<string, (src: string) => string> = {
    '2/0': (s) => s.replace(fn, `int broken = ;\n${fn}`),
    '2/2': (s) => s.replace(anchor, `${anchor}\n  if (row_end > 0) __builtin_trap();`),
    '1/1': (s) => s.replace(anchor, `${anchor}\n  for (volatile int spin = 1; spin;) {}`),
    '1/0': (s) => s.replace('kg_store(out, n, KG_ROWS, m0, mr, bias, residual, y);', 'out[0][0] += 1.0f;\n        kg_store(out, n, KG_ROWS, m0, mr, bias, residual, y);'),
  };
  return {
    ...real,
    build(p, kernel, opts) {
      const how = sabotage[`${p.config.unroll}/${p.config.prefetch}`];
      if (!how) return real.build(p, kernel, opts);
      const src = how(kernel.files['kernel.c']!);
      if (src === kernel.files['kernel.c']) throw new Error('sabotage did not apply');
      return real.build(p, { ...kernel, files: { ...kernel.files, 'kernel.c': src } }, opts);
    },
  };
}

describe('a workload with nothing to run', () => {
  it('is reported as skipped with its pruning reasons, and nothing is recorded for it', async () => {
    const dir = tmp();
    const db = openTuningDb(join(dir, 't.db'));
    const events: TuneEvent[] = [];
    // No candidate executes here: the space the tuner keeps is empty.
    const runnerFor = (plan: Plan): KernelRunner => ({ ...cRunner((plan.params as { isa: string }).isa), cannotExecute: () => 'this CPU lacks everything' });
    const summary = await tune({ db, device: cpu, target: 'c', workloads: [{ op: q4, shape: SMALL }], strategy: 'exhaustive', trials: 2, threads: 1, cacheDir: join(dir, 'cache'), runnerFor, onEvent: (e) => events.push(e) });
    expect(summary.results).toHaveLength(0);
    const skipped = events.filter((e) => e.kind === 'skipped');
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ index: 0, of: 1, op: 'matmul_q4', shape: SMALL });
    expect(skipped[0]!.kind === 'skipped' && skipped[0]!.space.pruned.get('cannot execute here: this CPU lacks everything')).toBeGreaterThan(0);
    expect(db.workloads()).toHaveLength(0);
    db.close();
  });
});

describe.skipIf(noGcc !== undefined)('configs this machine cannot run', () => {
  it('are recorded as unsupported with the reason, counted apart from failures, never the best, and count as measured on resume', async () => {
    const dir = tmp();
    const db = openTuningDb(join(dir, 't.db'));
    const why = 'the adapter lacks shader-f16 (a stand-in)';
    // Nothing compiles or runs: every build says this machine cannot run the kernel.
    const runnerFor = (plan: Plan): KernelRunner => ({ ...cRunner((plan.params as { isa: string }).isa), build: async () => ({ status: 'unsupported', detail: why, compileMs: 0 }) });
    const opts = { db, device: cpu, target: 'c' as const, workloads: [{ op: q4, shape: SMALL }], strategy: 'exhaustive', trials: 3, threads: 1, cacheDir: join(dir, 'cache'), runnerFor };
    const events: TuneEvent[] = [];
    const summary = await tune({ ...opts, onEvent: (e) => events.push(e) });
    const r = summary.results[0]!;
    expect(db.trials(r.workload.id).map((t) => [t.status, t.error, t.timing])).toEqual(Array(3).fill(['unsupported', why, undefined]));
    expect(r.best).toBeUndefined();
    expect(r.final).toBeUndefined();
    const last = events.filter((e) => e.kind === 'trial').at(-1);
    expect(last).toMatchObject({ done: 3, failures: 0, unsupported: 3 });
    // The same machine (the same fingerprint, so the same adapter and toolkit) does not try them again.
    let planned = -1;
    await tune({ ...opts, onEvent: (e) => (e.kind === 'workload' ? (planned = e.planned) : undefined) });
    expect(planned).toBe(0);
    db.close();
  });
});

describe.skipIf(noGcc !== undefined)('a user\'s own profile whose figures change', () => {
  it('is measured again under its new figures, in a workload of their own; the same figures resume', async () => {
    const dir = tmp();
    const db = openTuningDb(join(dir, 't.db'));
    // Nothing runs: every candidate is `unsupported` at once, which is all resume needs to count.
    const runnerFor = (plan: Plan): KernelRunner => ({ ...cRunner((plan.params as { isa: string }).isa), build: async () => ({ status: 'unsupported', detail: 'a stand-in', compileMs: 0 }) });
    const mine = checkOwnProfile({ ...cpu, name: 'qa-tune-lab', match: undefined }, 'lab.json');
    const planned = async (device: DeviceProfile) => {
      let n = -1;
      await tune({ db, device, target: 'c', workloads: [{ op: q4, shape: SMALL }], strategy: 'exhaustive', trials: 2, threads: 1, cacheDir: join(dir, 'cache'), runnerFor, onEvent: (e) => (e.kind === 'workload' ? (n = e.planned) : undefined) });
      return n;
    };
    expect(await planned(mine)).toBe(2);
    expect(await planned({ ...mine, description: 'reworded' })).toBe(0);
    expect(await planned({ ...mine, cpu: { ...mine.cpu!, l2Bytes: mine.cpu!.l2Bytes * 2 } })).toBe(2);
    expect(db.workloads().map((w) => w.fingerprint.profileHash)).toEqual([profileHash(mine), profileHash({ ...mine, cpu: { ...mine.cpu!, l2Bytes: mine.cpu!.l2Bytes * 2 } })]);
    db.close();
  });
});

describe.skipIf(noGcc !== undefined)('tuning on the host', () => {
  // Under a host whose kernels run only under an emulator (apple-m2 on x86) the tuner prunes them and
  // times the scalar ones, whose space has no unroll 2: the sabotaged configs are not among them.
  it.skipIf(untimedHost !== undefined)('records broken candidates as statuses with their text, keeps going, and never retries them', async () => {
    const dir = tmp();
    const db = openTuningDb(join(dir, 't.db'));
    const opts = {
      db,
      device: host,
      target: 'c' as const,
      workloads: [{ op: q4, shape: SMALL }],
      strategy: 'exhaustive',
      trials: 6,
      timeoutMs: 3000,
      cacheDir: join(dir, 'cache'),
      runnerFor: saboteur,
    };
    const summary = await tune(opts);
    // The session's own trials (the final re-timing adds `retime` trials of the ok configs).
    const trials = db.trials(summary.results[0]!.workload.id).filter((t) => t.strategy !== RETIME_STRATEGY);
    expect(trials).toHaveLength(6);
    const byKey = new Map(trials.map((t) => [`${t.config.unroll}/${t.config.prefetch}`, t]));
    expect(byKey.get('2/1')!.status).toBe('ok');
    expect(byKey.get('2/1')!.timing!.medianMs).toBeGreaterThan(0);
    expect(byKey.get('2/0')).toMatchObject({ status: 'compile_error' });
    expect(byKey.get('2/0')!.error).toMatch(/expected expression/);
    expect(byKey.get('2/2')).toMatchObject({ status: 'crash' });
    expect(byKey.get('1/1')).toMatchObject({ status: 'timeout' });
    expect(byKey.get('1/0')).toMatchObject({ status: 'wrong_result' });
    expect(byKey.get('1/0')!.error).toMatch(/NMSE/);
    for (const t of trials) expect(t.timing === undefined).toBe(t.status !== 'ok');
    expect(summary.results[0]!.best!.status).toBe('ok');

    // Running again measures nothing: every config already has a trial, failures included, and
    // the re-timed best stands.
    const recorded = db.trials(summary.results[0]!.workload.id).length;
    let planned = -1;
    await tune({ ...opts, onEvent: (e) => (e.kind === 'workload' ? (planned = e.planned) : undefined) });
    expect(planned).toBe(0);
    expect(db.trials(summary.results[0]!.workload.id)).toHaveLength(recorded);
    db.close();
  });

  it.skipIf(untimedHost !== undefined)('resumes after the tuner is killed mid-run, with a consistent database', async () => {
    const dir = tmp();
    const env = { ...process.env, KGEN_DB: join(dir, 't.db'), XDG_CACHE_HOME: join(dir, 'cache') };
    // Resume is what is tested: no re-measuring, so trials come at a steady pace on a busy machine (the final re-timing stays).
    const args = ['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--trials', '10', '--strategy', 'random', '--remeasure', '0'];
    const child = execa(KGEN, args, { env, reject: false });
    // Kill -9 (no chance to clean up) once a few trials are in.
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        const raw = new Database(env.KGEN_DB, { readonly: true, fileMustExist: true });
        const n = (raw.prepare('SELECT count(*) AS n FROM trials').get() as { n: number }).n;
        raw.close();
        if (n >= 3) break;
      } catch {
        // not created yet
      }
    }
    child.kill('SIGKILL');
    await child;
    const raw = new Database(env.KGEN_DB);
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    const before = (raw.prepare('SELECT count(*) AS n FROM trials').get() as { n: number }).n;
    raw.close();
    expect(before).toBeGreaterThanOrEqual(3);
    expect(before).toBeLessThan(10);

    const again = await execa(KGEN, args, { env, reject: false });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toContain(`${before} measured before, ${10 - before} to measure`);
    const db = openTuningDb(env.KGEN_DB);
    const trials = db.trials(db.workloads()[0]!.id).filter((t) => t.strategy !== RETIME_STRATEGY);
    expect(trials).toHaveLength(10);
    expect(new Set(trials.map((t) => t.configHash)).size).toBe(10);
    db.close();
  });

  it.skipIf(untimedHost !== undefined)('Ctrl-C stops cleanly with exit 130 and says how to resume', async () => {
    const dir = tmp();
    const env = { ...process.env, KGEN_DB: join(dir, 't.db'), XDG_CACHE_HOME: join(dir, 'cache') };
    const child = execa(KGEN, ['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--trials', '40'], { env, reject: false });
    // Interrupt once the first trial is recorded (a fixed sleep raced the tuner's start on a loaded machine).
    await new Promise<void>((resolve) => {
      let seen = '';
      const onData = (chunk: Buffer) => {
        seen += chunk.toString();
        if (/trial \d+\/40/.test(seen)) {
          child.stderr!.off('data', onData);
          resolve();
        }
      };
      child.stderr!.on('data', onData);
      void child.then(() => resolve(), () => resolve());
    });
    child.kill('SIGINT');
    const r = await child;
    expect(r.exitCode, r.stderr).toBe(130);
    expect(r.stderr).toContain('finishing cleanly');
    expect(r.stdout).toContain('run the same command again to resume');
    const raw = new Database(env.KGEN_DB, { readonly: true });
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    raw.close();
  });

  it.skipIf(untimedHost !== undefined)('two tuners on one database both record every trial', async () => {
    const dir = tmp();
    const env = { ...process.env, KGEN_DB: join(dir, 't.db'), XDG_CACHE_HOME: join(dir, 'cache') };
    // Each tuner is the others' interference: what is tested here is the database, so no re-measuring or re-timing.
    const run = (op: string, seed: string) =>
      execa(KGEN, ['tune', '--device', 'host', '--op', op, '--shape', 'M=1,N=64,K=256', '--trials', '6', '--strategy', 'random', '--seed', seed, '--json', '--remeasure', '0', '--retime', '0'], { env, reject: false });
    const [a, b, c] = await Promise.all([run('matmul_q4', '1'), run('matmul_q4', '2'), run('matmul_q8', '3')]);
    for (const r of [a, b, c]) expect(r.exitCode, r.stderr).toBe(0);
    // --json is JSON lines: each line an event, the summary last.
    const events = a.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; workloads?: unknown[] });
    expect(events[0]!.event).toBe('workload');
    expect(events.at(-1)).toMatchObject({ event: 'summary', stopped: null, workloads: [expect.objectContaining({ op: 'matmul_q4' })] });
    const db = openTuningDb(env.KGEN_DB);
    const ws = db.workloads();
    expect(ws.map((w) => w.op.name).sort()).toEqual(['matmul_q4', 'matmul_q8']);
    // Both q4 tuners' trials are kept (6 each; a config both measured is recorded twice).
    expect(ws.find((w) => w.op.name === 'matmul_q4')!.trials).toBe(12);
    expect(ws.find((w) => w.op.name === 'matmul_q8')!.trials).toBe(6);
    db.close();
  });
});

describe.skipIf(noGcc !== undefined || !hostIsa().isa.includes('avx2'))('the read-bandwidth probe (the roofline of tuning on the host)', () => {
  it('compiles warning-free and reports GB/s for each thread count over (nearly) the whole buffer', async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'probe.c'), probeSource());
    const cc = await execa('gcc', ['-O3', '-mavx2', '-pthread', '-Wall', '-Wextra', '-Werror', join(dir, 'probe.c'), '-o', join(dir, 'probe')], { reject: false, all: true });
    expect(cc.exitCode, cc.all).toBe(0);
    const r = await execa(join(dir, 'probe'), ['64', '1', '1', '2'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { threads: number; bytes: number; gbps: number });
    expect(lines.map((l) => l.threads)).toEqual([1, 2]);
    for (const l of lines) {
      expect(l.gbps).toBeGreaterThan(0);
      // Whole 256-byte steps of every stream of every thread: at most one step per stream and thread short of the buffer.
      expect(l.bytes).toBeLessThanOrEqual(64 * 2 ** 20);
      expect(l.bytes).toBeGreaterThan(64 * 2 ** 20 - 256 * 8 * l.threads);
    }
    expect(await measureReadBandwidth(join(dir, 'cache'), 1, 64)).toBeGreaterThan(0);
  });
});

describe('kgen tune and kgen db on the command line', () => {
  // A database path that does not exist unless a test gives one: nothing touches the user's default database.
  const run = (args: string[], env: Record<string, string> = {}) =>
    execa(KGEN, args, { reject: false, env: { ...process.env, KGEN_DB: join(tmp(), 'none.db'), ...env } });

  it('refuses a --config that leaves a workload no legal config, in one line and before any database exists', async () => {
    const dbPath = join(tmp(), 'pinned.db');
    // Two query heads a KV head and one query a task: 2 rows, so no row group of 4 fits, whatever the CPU.
    const r = await run(['tune', '--device', 'host', '--op', 'attention_q8kv', '--shape', 'B=1,Hq=2,Hkv=2,Sq=1,Skv=256,D=64', '--config', '{"rowGroup":4,"qBlock":1}'], { KGEN_DB: dbPath });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^kgen: --config: no config of attention_q8kv B=1,Hq=2,Hkv=2,Sq=1,Skv=256,D=64 on host \(c\) is legal: of \d+, \d+ by restriction: rowGroup exceeds the rows of a task .*--dry-run/);
    expect(existsSync(dbPath)).toBe(false);
  });

  it('refuses a --threads the harness cannot run, and names --ir for an IR file no config takes, each in one line and before any database exists', async () => {
    const dir = tmp();
    const dbPath = join(dir, 'refused.db');
    const threads = await run(['tune', '--device', 'wasm-simd128', '--op', 'matmul_q4', '--shape', 'M=1,N=32,K=64', '--threads', '2'], { KGEN_DB: dbPath });
    expect(threads.exitCode).toBe(2);
    expect(threads.stderr.trim().split('\n')).toHaveLength(1);
    expect(threads.stderr).toMatch(/^kgen: --threads: the WebAssembly harness runs one thread, not 2; expected 1;/);
    // q8 scale groups of one value hold no whole number of SIMD128 vectors: nothing on wasm takes them.
    const irPath = join(dir, 'g1.json');
    writeFileSync(irPath, JSON.stringify({ kind: 'attention', name: 'a_g1', kvCache: 'q8', kvGroupSize: 1 }));
    const ir = await run(['tune', '--device', 'wasm-simd128', '--ir', irPath, '--shape', 'B=1,Hq=2,Hkv=1,Sq=1,Skv=8,D=20'], { KGEN_DB: dbPath });
    expect(ir.exitCode).toBe(2);
    expect(ir.stderr.trim().split('\n')).toHaveLength(1);
    expect(ir.stderr).toMatch(/^kgen: --ir: no config of a_g1 B=1,Hq=2,Hkv=1,Sq=1,Skv=8,D=20 on wasm-simd128 \(wasm\) is legal: .*q8 scale groups hold no whole number of vectors/);
    expect(existsSync(dbPath)).toBe(false);
  });

  it('refuses a device that is not here, in one line, and shows its space with --dry-run', async () => {
    const r = await run(['tune', '--device', 'rtx4090']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^kgen: --device: rtx4090 is not present on this machine \(.*\); expected .*--dry-run/);
    const d = await run(['tune', '--device', 'rtx4090', '--dry-run', '--op', 'matmul_q4', '--shape', 'M=1,N=4096,K=14336']);
    expect(d.exitCode, d.stderr).toBe(0);
    expect(d.stdout).toMatch(/matmul_q4 M=1,N=4096,K=14336 on rtx4090 \(cuda\): \d+ legal of \d+ configs/);
    expect(d.stdout).toMatch(/roofline ms/);
    const all = await run(['tune', '--device', 'rtx4090', '--dry-run']);
    expect(all.exitCode).toBe(0);
    expect(all.stdout).toContain('(90 workloads;');
    // A reader that stops early (| head) ends kgen quietly: no EPIPE stack trace.
    const head = await execa('sh', ['-c', `"${KGEN}" tune --device rtx4090 --dry-run --op matmul_q4 --shape M=1,N=4096,K=14336 | head -n 1`], { reject: false });
    expect(head.stdout.split('\n')).toHaveLength(1);
    expect(head.stderr).toBe('');
  });

  it('--dry-run --json streams one JSON array, a workload per line, with what pruneSpace finds; a bad pin prints nothing', async () => {
    const shape = { M: 1, N: 256, K: 256 };
    const r = await run(['tune', '--device', 'rtx4090', '--dry-run', '--json', '--op', 'matmul_q4', '--shape', 'M=1,N=256,K=256']);
    expect(r.exitCode, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect([lines[0], lines[2], lines.length]).toEqual(['[', ']', 3]);
    const rtx = getDevice('rtx4090');
    const s = pruneSpace(planRequest({ op: q4, shape, device: rtx, target: 'cuda' }));
    const [w] = JSON.parse(r.stdout) as { op: string; shape: object; total: number; legal: { config: Config; footprint: { bytes: number; registers: number }; rooflineMs: number }[]; pruned: Record<string, number> }[];
    expect({ op: w!.op, shape: w!.shape, total: w!.total, pruned: w!.pruned }).toEqual({ op: 'matmul_q4', shape, total: s.total, pruned: Object.fromEntries(s.pruned) });
    expect(w!.legal.map((c) => c.config)).toEqual(s.legal.map((c) => c.config));
    expect(w!.legal.every((c) => c.footprint.bytes >= 0 && c.footprint.registers > 0 && c.rooflineMs > 0)).toBe(true);
    // Every workload's pins are checked before the first is printed: the standard workload's first
    // shape stages 16384 activations per pass, a later one (smaller K) cannot.
    const bad = await run(['tune', '--device', 'rtx4090', '--dry-run', '--json', '--config', '{"xChunk":16384}']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/^kgen: config\.xChunk: got 16384; expected one of 512, /);
  });

  // tune resolved --op/--shape against the profile's name, which for a profile file is no device
  // kgen knows: `tune --device my-gpu.json --op ...` failed with "unknown device" (the standard
  // workload, which needs no request, worked).
  it('--device FILE.json with --op and --shape: the file\'s profile plans the workload', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-tune-'));
    const file = join(dir, 'my-gpu.json');
    writeFileSync(file, JSON.stringify({ ...getDevice('rtx4090'), name: 'my-gpu' }));
    const r = await run(['tune', '--device', file, '--dry-run', '--json', '--op', 'matmul_q4', '--shape', 'M=1,N=256,K=256']);
    expect(r.exitCode, r.stderr).toBe(0);
    const [w] = JSON.parse(r.stdout) as { op: string; legal: unknown[] }[];
    expect(w!.op).toBe('matmul_q4');
    expect(w!.legal.length).toBeGreaterThan(0);
  });

  it('bad flags are one-line usage errors', async () => {
    for (const [args, message] of [
      [['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--remeasure', '11'], /--remeasure: got 11; expected an integer from 0 to 10/],
      [['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--retime', 'best'], /--retime: got "best"/],
      [['tune', '--device', 'host', '--shape', 'M=1,N=64,K=256'], /--shape: given without --op/],
      [['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--time-budget', 'soon'], /--time-budget: got "soon"/],
      [['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--strategy', 'annealing'], /--strategy: unknown strategy "annealing"/],
      [['db', 'show', '1', '--db', '/nonexistent/x.db'], /--db: \/nonexistent\/x\.db does not exist/],
    ] as const) {
      const dir = tmp();
      const r = await run([...args], { KGEN_DB: join(dir, 'never.db') });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(existsSync(join(dir, 'never.db')), 'a refused command creates no database').toBe(false);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it.skipIf(noGcc !== undefined || untimedHost !== undefined)('tune, db list/show/best/export/import, and emit from the record', async () => {
    const dir = tmp();
    const env = { KGEN_DB: join(dir, 'a.db'), XDG_CACHE_HOME: join(dir, 'cache') };
    const t = await run(['tune', '--device', 'host', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--trials', '4'], env);
    expect(t.exitCode, t.stderr).toBe(0);
    expect(t.stdout).toMatch(/rank\s+time ms\s+GB\/s\s+GFLOPS\s+% roofline\s+config/);
    // The text shows the knobs in use, as emit does: a GEMV's has no nTile (the records keep it).
    expect(t.stdout).toMatch(/\{"isa":"[a-z0-9]+","actQuant":/);
    expect(t.stdout + t.stderr).not.toContain('"nTile"');
    // The best 3 of the 4 were re-timed back to back: 4 trials and 3 re-timings, and a fourth for
    // the default config where it was not among the best 3 (which depends on the timings).
    expect(t.stderr).toMatch(/re-timing the best 3( and the default config)? back to back, 3 rounds/);
    expect(t.stdout).toMatch(/re-timed the best 3( and the default config)? back to back, 3 rounds: winner [\d.]+ ms \(measured [\d.]+ ms before\)/);
    const list = await run(['db', 'list'], env);
    const listed = /1\s+host\s+c\s+matmul_q4\s+M=1,N=64,K=256\s+(\d+)\s/.exec(list.stdout);
    const trialCount = Number(listed?.[1]);
    expect([7, 8]).toContain(trialCount);
    const best = await run(['db', 'best', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--json'], env);
    const chosen = JSON.parse(best.stdout);
    expect(chosen.source).toBe('record');
    expect(chosen.trial.strategy).toBe('retime');
    const emitted = await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--json'], env);
    expect(emitted.exitCode, emitted.stderr).toBe(0);
    // The manifest states the record's knobs that this kernel uses (the record keeps them all).
    const manifest = JSON.parse(emitted.stdout).manifest;
    expect(manifest.configSource).toBe('record');
    expect(chosen.config).toMatchObject(manifest.config);
    expect(emitted.stderr).toMatch(/config from the tuning database \(tuned for this shape/);
    // plan and verify describe and check that same kernel.
    const planned = await run(['plan', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--json'], env);
    expect(JSON.parse(planned.stdout).configSource).toBe('record');
    const verified = await run(['verify', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--json'], env);
    expect(JSON.parse(verified.stdout)).toMatchObject({ status: 'ok', configSource: 'record' });
    expect(verified.stderr).toMatch(/config from the tuning database/);
    const nearest = await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=96,K=256', '--json'], env);
    expect(JSON.parse(nearest.stdout).manifest.configSource).toBe('nearest-record');
    expect(nearest.stderr).toMatch(/the nearest recorded shape/);
    const ignored = await run(['emit', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--json', '--no-records'], env);
    expect(JSON.parse(ignored.stdout).manifest.configSource).toBe('default');

    const file = join(dir, 'export.json');
    expect((await run(['db', 'export', '-o', file], env)).exitCode).toBe(0);
    const imp = await run(['db', 'import', file, '--db', join(dir, 'b.db')], env);
    expect(imp.stdout).toContain(`1 new workloads, ${trialCount} new trials, 0 already present`);
    const again = await run(['db', 'import', file, '--db', join(dir, 'b.db')], env);
    expect(again.stdout).toContain(`0 new workloads, 0 new trials, ${trialCount} already present`);
    const show = await run(['db', 'show', '1', '--db', join(dir, 'b.db')], env);
    expect(show.stdout).toContain(`trials: ${trialCount} ok`);
    // The imported re-timing is the verdict there too.
    const bestThere = await run(['db', 'best', '--op', 'matmul_q4', '--shape', 'M=1,N=64,K=256', '--json', '--db', join(dir, 'b.db')], env);
    expect(JSON.parse(bestThere.stdout).config).toEqual(chosen.config);
  });
});
