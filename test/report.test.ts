import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { planRequest } from '../src/backends/registry.js';
import { notRunnable, notRunnableText } from '../src/db/not-runnable.js';
import { openTuningDb } from '../src/db/sqlite.js';
import type { Trial, WorkloadInfo } from '../src/db/types.js';
import { getDevice } from '../src/device/index.js';
import { canonicalHash } from '../src/hash.js';
import { CATALOG } from '../src/ir/catalog.js';
import { opHash, parseShape } from '../src/ir/validate.js';
import { defaultConfig } from '../src/plan/index.js';
import { KGEN_VERSION } from '../src/version.js';

const KGEN = join(import.meta.dirname, '..', 'bin', 'kgen');
const CHROMIUM = '/usr/bin/chromium';

let uid = 0;
function trial(config: Record<string, number | string>, status: Trial['status'], ms?: number, minutes = uid): Trial {
  return {
    uid: `00000000-0000-4000-8000-${String(++uid).padStart(12, '0')}`,
    config,
    configHash: canonicalHash(config),
    status,
    ...(status === 'ok' ? { timing: { medianMs: ms!, minMs: ms! * 0.95, maxMs: ms! * 1.1, spread: 0.04, runs: 15 } } : { error: `${status} in the test` }),
    strategy: 'random',
    origin: 'test',
    createdAt: new Date(Date.UTC(2026, 10, 30, 12, minutes)).toISOString(),
  };
}

function workload(device: string, shape: string, fingerprint: WorkloadInfo['fingerprint']): WorkloadInfo {
  const op = CATALOG.matmul_q4!;
  return { device, fingerprint, target: 'c', op, irHash: opHash(op), shape: parseShape(shape, op), weightFormat: 'q4', templateHash: '0123456789abcdef', kgenVersion: KGEN_VERSION, bytes: 2.2e6, flops: 8.4e6, rooflineMs: 0.05 };
}

/**
 * A database with two devices: epyc-7763 (a profile kgen knows: its default config is planned and
 * found among the trials) with trials of every status (two it could not run), and a device from elsewhere whose
 * fingerprint holds text that would close a script element if it were not escaped.
 */
function makeDb(path: string): { defaultMs: number; bestMs: number } {
  const db = openTuningDb(path);
  const w = db.ensureWorkload(workload('epyc-7763', 'M=1,N=4096,K=4096', { profile: 'epyc-7763', cpu: 'AMD EPYC 7763' }));
  const def = defaultConfig(planRequest({ op: w.op, shape: w.shape, device: getDevice('epyc-7763'), target: 'c' }));
  db.addTrial(w.id, trial(def, 'ok', 0.4));
  db.addTrial(w.id, trial({ ...def, nTile: 999 }, 'compile_error'));
  db.addTrial(w.id, trial({ ...def, nTile: 998 }, 'ok', 0.25));
  db.addTrial(w.id, trial({ ...def, nTile: 997 }, 'wrong_result'));
  db.addTrial(w.id, trial({ ...def, nTile: 996 }, 'ok', 0.2));
  db.addTrial(w.id, trial({ ...def, nTile: 995 }, 'timeout'));
  db.addTrial(w.id, trial({ ...def, nTile: 994 }, 'crash'));
  // Not run: the machine could not (no verdict on the configs), counted apart from the failures.
  db.addTrial(w.id, { ...trial({ ...def, nTile: 993 }, 'unsupported'), error: 'the adapter lacks shader-f16 (SwiftShader)' });
  db.addTrial(w.id, { ...trial({ ...def, nTile: 992 }, 'unsupported'), error: 'the adapter lacks shader-f16 (SwiftShader)' });
  const v = db.ensureWorkload(workload('lab-box', 'M=16,N=1024,K=2048', { profile: 'lab-box', cpu: '</script><script>window.pwned=1</script>' }));
  db.addTrial(v.id, trial({ isa: 'avx2', nTile: 8 }, 'ok', 1.5));
  db.addTrial(v.id, trial({ isa: 'avx2', nTile: 16 }, 'ok', 1.2));
  db.close();
  return { defaultMs: 0.4, bestMs: 0.2 };
}

describe('trials this machine could not run, as every reader names them', () => {
  it('counts them by reason, most common first, each reason\'s count where there are several', () => {
    const t = (status: Trial['status'], error?: string) => ({ status, error });
    const one = notRunnable([t('ok'), t('compile_error', 'x'), t('unsupported', 'the adapter lacks shader-f16 (SwiftShader)\nmore'), t('unsupported', 'the adapter lacks shader-f16 (SwiftShader)')]);
    expect(one).toEqual({ count: 2, reasons: [{ reason: 'the adapter lacks shader-f16 (SwiftShader)', count: 2 }] });
    expect(notRunnableText(one)).toBe('2 not runnable here: the adapter lacks shader-f16 (SwiftShader)');
    const two = notRunnable([t('unsupported', 'b'), t('unsupported', 'a'), t('unsupported', 'a')]);
    expect(notRunnableText(two)).toBe('3 not runnable here: a (2); b (1)');
    expect(notRunnableText(notRunnable([t('crash', 'boom')]))).toBeUndefined();
  });
});

describe('kgen report', () => {
  it('--json holds every trial, the best config with its speedup over the default, and the search progress', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-report-'));
    const dbPath = join(dir, 'tuning.db');
    const { defaultMs, bestMs } = makeDb(dbPath);
    const r = await execa(KGEN, ['report', '--db', dbPath, '--json'], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const data = JSON.parse(r.stdout);
    expect(data.devices.map((d: { device: string }) => d.device)).toEqual(['epyc-7763', 'lab-box']);
    expect(data.devices[0].roof).toEqual({ bandwidthGBs: getDevice('epyc-7763').memory.bandwidthGBs, peakGflops: expect.any(Number) });
    expect(data.devices[1].roof).toBeUndefined();
    const [w, v] = data.workloads;
    expect(w.trials.map((t: { status: string }) => t.status)).toEqual(['ok', 'compile_error', 'ok', 'wrong_result', 'ok', 'timeout', 'crash', 'unsupported', 'unsupported']);
    expect(w.notRunnable).toBe('2 not runnable here: the adapter lacks shader-f16 (SwiftShader)');
    expect(v.notRunnable).toBeUndefined();
    expect(w.best.medianMs).toBe(bestMs);
    expect(w.default).toEqual({ measured: true, medianMs: defaultMs });
    expect(w.speedup).toBeCloseTo(defaultMs / bestMs, 12);
    expect(w.bestSoFarMs).toEqual([0.4, 0.4, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]);
    expect(v.default).toBeUndefined(); // lab-box is no profile this kgen knows
    expect(v.best.medianMs).toBe(1.2);
    // db show marks the same best and names each trial's strategy.
    const show = await execa(KGEN, ['db', 'show', String(w.id), '--db', dbPath]);
    expect(show.stdout).toMatch(/^trials: .*2 unsupported\n2 not runnable here: the adapter lacks shader-f16 \(SwiftShader\) \(status unsupported: no verdict on those configs\)$/m);
    const rows = show.stdout.split('\n').filter((l) => /^(ok|crash|timeout|compile_error|wrong_result|unsupported)/.test(l));
    expect(rows.filter((l) => l.startsWith('ok*'))).toEqual([expect.stringMatching(/^ok\*\s+0\.200\s.*\srandom\s/)]);
    // ... each config as emit prints it: a GEMV's plan reads each weight row once, so nTile (the
    // trials' only difference) is no knob in use there; --json keeps the records whole.
    expect(rows).toHaveLength(9);
    for (const l of rows) {
      expect(l).toMatch(/\{"isa":"[a-z0-9]+",.*\}/);
      expect(l).not.toMatch(/nTile/);
    }
    // --limit cuts the table only: --json holds every trial (the help says so).
    const limited = await execa(KGEN, ['db', 'show', String(w.id), '--db', dbPath, '--limit', '2']);
    expect(limited.stdout.split('\n').filter((l) => /^(ok|crash|timeout|compile_error|wrong_result|unsupported)/.test(l))).toHaveLength(2);
    const shownJson = JSON.parse((await execa(KGEN, ['db', 'show', String(w.id), '--db', dbPath, '--json', '--limit', '2'])).stdout);
    expect(shownJson.trials.map((t: { config: { nTile: number } }) => t.config.nTile).sort()).toEqual([992, 993, 994, 995, 996, 997, 998, 999, defaultConfig(planRequest({ op: CATALOG.matmul_q4!, shape: parseShape('M=1,N=4096,K=4096', CATALOG.matmul_q4!), device: getDevice('epyc-7763'), target: 'c' })).nTile].sort());
    // db list counts them in a column of their own: 9 trials, 3 ok, 4 failed, 2 not run.
    const list = await execa(KGEN, ['db', 'list', '--db', dbPath]);
    expect(list.stdout).toMatch(/^id +device +target +op +shape +trials +ok +failed +not run +best ms/m);
    expect(list.stdout).toMatch(/epyc-7763 +c +matmul_q4 +M=1,N=4096,K=4096 +9 +3 +4 +2 +0\.200/);
    const best = await execa(KGEN, ['db', 'best', '--device', 'epyc-7763', '--op', 'matmul_q4', '--shape', 'M=1,N=4096,K=4096', '--db', dbPath]);
    expect(best.stdout.split('\n')[0]).not.toMatch(/nTile/);
    // A device this kgen has no profile for: its configs are shown as recorded.
    const other = await execa(KGEN, ['db', 'show', String(v.id), '--db', dbPath]);
    expect(other.stdout).toMatch(/\{"isa":"avx2","nTile":16\}/);
  });

  it('--device keeps one device\'s records; a profile file gives its roofline; an unknown device is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-report-'));
    const dbPath = join(dir, 'tuning.db');
    makeDb(dbPath);
    // lab-box's records came from a machine with its own profile: with that file, its roof is known.
    const profile = join(dir, 'lab-box.json');
    const { match: _match, ...epyc } = getDevice('epyc-7763');
    writeFileSync(profile, JSON.stringify({ ...epyc, name: 'lab-box', memory: { ...epyc.memory, bandwidthGBs: 123 } }));
    const r = await execa(KGEN, ['report', '--db', dbPath, '--json', '--device', profile], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const data = JSON.parse(r.stdout);
    expect(data.devices.map((d: { device: string; roof?: { bandwidthGBs: number } }) => [d.device, d.roof?.bandwidthGBs])).toEqual([['lab-box', 123]]);
    expect(data.workloads.map((w: { shape: string }) => w.shape)).toEqual(['M=16,N=1024,K=2048']);
    const byFile = await execa(KGEN, ['db', 'list', '--db', dbPath, '--device', profile, '--json']);
    expect(JSON.parse(byFile.stdout).map((w: { device: string }) => w.device)).toEqual(['lab-box']);
    // A name the database holds records of is taken without a profile, as are kgen's own.
    const byName = await execa(KGEN, ['db', 'list', '--db', dbPath, '--device', 'lab-box', '--json']);
    expect(JSON.parse(byName.stdout).map((w: { device: string }) => w.device)).toEqual(['lab-box']);
    const unknown = await execa(KGEN, ['report', '--db', dbPath, '--json', '--device', 'lab-bx'], { reject: false });
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/^kgen: --device: unknown device "lab-bx".*lab-box.*kgen db list/s);
    const missing = await execa(KGEN, ['db', 'list', '--db', dbPath, '--device', join(dir, 'none.json')], { reject: false });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/^kgen: --device: .*none\.json/);
  });

  it('refuses a missing --out and a missing database, writing nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-report-'));
    const a = await execa(KGEN, ['report', '--db', join(dir, 'none.db'), '-o', join(dir, 'r.html')], { reject: false });
    expect(a.exitCode).toBe(2);
    expect(a.stderr).toMatch(/--db: /);
    const b = await execa(KGEN, ['report', '--db', join(dir, 'none.db')], { reject: false });
    expect(b.stderr).toMatch(/--out: missing/);
    expect(existsSync(join(dir, 'r.html'))).toBe(false);
    expect(existsSync(join(dir, 'none.db'))).toBe(false);
  });

  const noBrowser = !existsSync(CHROMIUM) ? `${CHROMIUM} is not installed (scripts/install-tools.sh installs Debian's chromium)` : undefined;
  if (noBrowser) console.warn(`NOTE: skipping the report's browser test: ${noBrowser}`);
  it.skipIf(noBrowser !== undefined)('the page, opened offline in headless Chromium, plots exactly the database\'s trials', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kgen-report-'));
    const dbPath = join(dir, 'tuning.db');
    makeDb(dbPath);
    const page = join(dir, 'report.html');
    const r = await execa(KGEN, ['report', '--db', dbPath, '-o', page], { reject: false });
    expect(r.exitCode, r.stderr).toBe(0);
    const html = readFileSync(page, 'utf8');
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+href=/i); // everything inline
    const data = JSON.parse((await execa(KGEN, ['report', '--db', dbPath, '--json'])).stdout);

    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    try {
      const tab = await browser.newPage();
      const requests: string[] = [];
      const errors: string[] = [];
      tab.on('request', (q) => { if (!q.url().startsWith('file:') && !q.url().startsWith('data:')) requests.push(q.url()); });
      tab.on('pageerror', (e) => errors.push(String(e)));
      await tab.route(/^https?:/, (route) => route.abort());
      await tab.goto(`file://${page}`);
      await tab.waitForFunction(() => (window as unknown as { kgenCharts?: unknown }).kgenCharts !== undefined);
      const plotted = await tab.evaluate(() => {
        const w = window as unknown as { Chart: { getChart(c: HTMLCanvasElement): { data: { datasets: { status: string; data: { x: number; y: number; trialId?: number }[] }[] } } }; pwned?: number };
        return {
          pwned: w.pwned,
          roofline: [...document.querySelectorAll<HTMLCanvasElement>('canvas[id^="roofline-"]')].map((c) => ({
            key: c.dataset.deviceKey,
            datasets: w.Chart.getChart(c).data.datasets.map((d) => ({ status: d.status, points: d.data.map((p) => ({ x: p.x, y: p.y, trialId: p.trialId })) })),
          })),
          table: [...document.querySelectorAll('table')[0]!.querySelectorAll('tr')].map((tr) => tr.textContent),
          fingerprints: document.querySelectorAll('table')[1]!.textContent,
        };
      });
      expect(errors).toEqual([]);
      expect(requests).toEqual([]);
      expect(plotted.pwned).toBeUndefined();
      expect(plotted.fingerprints).toContain('cpu=</script><script>window.pwned=1</script>');
      // Every trial is one point, in the dataset of its status; ok trials at (flops/byte, GFLOP/s).
      expect(plotted.roofline.map((c) => c.key)).toEqual(data.devices.map((d: { key: string }) => d.key));
      for (const chart of plotted.roofline) {
        const device = data.devices.find((d: { key: string }) => d.key === chart.key);
        const trials = data.workloads.filter((w: { deviceKey: string }) => w.deviceKey === chart.key).flatMap((w: { intensity: number; trials: { id: number; status: string; gflops?: number }[] }) => w.trials.map((t) => ({ ...t, intensity: w.intensity })));
        const points = chart.datasets.filter((d) => ['ok', 'wrong_result', 'crash', 'timeout', 'compile_error', 'unsupported'].includes(d.status)).flatMap((d) => d.points.map((p) => ({ ...p, status: d.status })));
        expect(points.map((p) => p.trialId).sort()).toEqual(trials.map((t: { id: number }) => t.id).sort());
        for (const t of trials) {
          const p = points.find((q) => q.trialId === t.id)!;
          expect(p.status).toBe(t.status);
          expect(p.x).toBeCloseTo(t.intensity, 9);
          if (t.status === 'ok') expect(p.y).toBeCloseTo(t.gflops!, 9);
        }
        expect(chart.datasets.some((d) => d.status === 'roofline')).toBe(device.roof !== undefined);
      }
      const bestRow = plotted.table.find((row) => row?.startsWith('matmul_q4M=1,N=4096,K=4096'));
      // 9 trials, 4 failed, 2 not runnable here (named by reason), then best, default and speedup.
    expect(bestRow).toMatch(/9 \(4\)2 not runnable here: the adapter lacks shader-f16 \(SwiftShader\)0\.2000\.4002\.00x/);
      await tab.screenshot({ path: join(dir, 'report.png') });
    } finally {
      await browser.close();
    }
  }, 60_000);
});
