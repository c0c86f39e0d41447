import type { Trial } from './types.js';

/**
 * Trials that were never run because the machine could not run them (status `unsupported`: the
 * adapter lacks a feature, nvcc lacks the arch), counted by their one-line reason, most common
 * first. They are not failures of their configs, so every reader (tune, `kgen db`, `kgen report`)
 * counts and names them apart from compile errors and wrong results.
 */
export interface NotRunnable {
  count: number;
  reasons: { reason: string; count: number }[];
}

/** The `unsupported` trials among `trials`, by reason; `count` 0 when there are none. */
export function notRunnable(trials: readonly Pick<Trial, 'status' | 'error'>[]): NotRunnable {
  const byReason = new Map<string, number>();
  for (const t of trials) {
    if (t.status !== 'unsupported') continue;
    const reason = t.error?.split('\n')[0] || 'no reason recorded';
    byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
  }
  const reasons = [...byReason].map(([reason, count]) => ({ reason, count })).sort((a, b) => b.count - a.count || a.reason.localeCompare(b.reason));
  return { count: reasons.reduce((n, r) => n + r.count, 0), reasons };
}

/** "3 not runnable here: the adapter lacks shader-f16 (SwiftShader)", each reason's count after it where there are several; undefined when there are none. */
export function notRunnableText(n: NotRunnable): string | undefined {
  if (!n.count) return undefined;
  const reasons = n.reasons.map((r) => (n.reasons.length > 1 ? `${r.reason} (${r.count})` : r.reason));
  return `${n.count} not runnable here: ${reasons.join('; ')}`;
}
