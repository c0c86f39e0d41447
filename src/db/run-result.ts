import type { ImportedRun } from '../backends/types.js';
import { canonicalHash } from '../hash.js';
import { validateExchange } from './exchange.js';
import { workloadKey } from './sqlite.js';
import type { Exchange, Trial } from './types.js';

/**
 * A target's run-kit measurement (`importRunResult` in src/backends/registry.ts) as the export
 * format `kgen db import` merges: one workload, keyed as the tuner keys it, holding the one trial,
 * both dated when the run was measured. It passes the export validator too: one set of checks
 * guards everything that enters the database.
 */
export function importedRunExchange(run: ImportedRun): Exchange {
  const { measuredAt, ...info } = run.workload;
  const trial: Trial = { ...run.trial, configHash: canonicalHash(run.trial.config), origin: '', createdAt: measuredAt };
  const workload = { ...info, key: workloadKey(info), createdAt: measuredAt, trials: [trial] };
  return validateExchange({ format: 'kgen-tuning', version: 1, exportedAt: measuredAt, workloads: [workload] });
}
