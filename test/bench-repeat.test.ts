import { describe, expect, it } from 'vitest';
import { bestOfRuns, type BenchRow } from '../bench/common.js';

/** `--repeat N` keeps per row the run with the lowest median, and never hides a run that had no time. */
describe('bench --repeat: bestOfRuns', () => {
  const row = (ms: number, c = 'gemv kgen q4 avx2', threads = 1): BenchRow => ({ kind: 'kgen', case: c, shape: 'M=1,N=4096,K=14336', threads, ms, minMs: ms, bytes: 1e9, gbps: 1 / ms, runs: 51 });

  it('keeps the run with the lowest median and lists every median', () => {
    const [r] = bestOfRuns([[row(3)], [row(2)], [row(4)]]);
    expect(r!.ms).toBe(2);
    expect(r!.note).toBe('best of 3 runs, medians 3.000 / 2.000 / 4.000 ms');
  });

  it('a row wrong in one run, or missing from one, has no time', () => {
    const wrong = bestOfRuns([[row(3)], [{ ...row(NaN), case: 'gemv kgen q4 avx2 (WRONG OUTPUT)' }], [row(4)]]);
    expect(wrong).toHaveLength(1);
    expect(wrong[0]!.case).toBe('gemv kgen q4 avx2 (WRONG OUTPUT)');
    expect(wrong[0]!.ms).toBeNaN();
    expect(wrong[0]!.note).toContain('medians 3.000 / WRONG OUTPUT / 4.000');
    const missing = bestOfRuns([[row(3), row(5, 'x', 2)], [row(2)]]);
    expect(missing.map((r) => [r.case, r.ms])).toEqual([['gemv kgen q4 avx2', 2], ['x (FAILED)', NaN]]);
  });

  it('one run: its rows as they are', () => {
    expect(bestOfRuns([[row(3)]])).toEqual([row(3)]);
  });
});
