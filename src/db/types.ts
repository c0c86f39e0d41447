import type { TrialStatus } from '../backends/types.js';
import type { Config } from '../plan/types.js';

import type { Fingerprint, WorkloadInfo } from '../backends/types.js';

export type { Fingerprint, WorkloadInfo };

export interface Workload extends WorkloadInfo {
  id: number;
  key: string;
  fingerprintHash: string;
  createdAt: string;
}

/** Times of an `ok` trial, in milliseconds. */
export interface TrialTiming {
  medianMs: number;
  minMs: number;
  maxMs: number;
  spread: number;
  runs: number;
}

/**
 * One config measured on one workload. Invariant: `timing` is present iff `status` is `ok`; a
 * failure carries its text in `error`. `uid` is random and identifies the trial across export and
 * import, so merging databases never duplicates or loses a trial.
 */
export interface Trial {
  uid: string;
  config: Config;
  configHash: string;
  status: TrialStatus;
  timing?: TrialTiming;
  nmse?: number;
  maxAbsError?: number;
  error?: string;
  compileMs?: number;
  strategy?: string;
  runner?: string;
  origin: string;
  createdAt: string;
}

export interface TrialRow extends Trial {
  id: number;
  workloadId: number;
}

/** A workload with its trial counts, for `kgen db list`. */
export interface WorkloadSummary extends Workload {
  trials: number;
  byStatus: Partial<Record<TrialStatus, number>>;
  best?: TrialRow;
}

export interface WorkloadFilter {
  device?: string;
  target?: string;
  opName?: string;
  irHash?: string;
}

/** The JSON `kgen db export` writes and `kgen db import` reads (see docs/tuning.md). */
export interface Exchange {
  format: 'kgen-tuning';
  version: 1;
  exportedAt: string;
  workloads: Array<Omit<Workload, 'id'> & { trials: Trial[] }>;
}

export interface ImportSummary {
  workloadsAdded: number;
  trialsAdded: number;
  /** Trials already present (same uid): merging the same file twice adds nothing. */
  trialsPresent: number;
}

/**
 * The tuning database: workloads and their trials. Implementations must keep every write atomic
 * (a trial is written in its own transaction as it finishes) and safe with several processes on
 * the same store.
 */
export interface TuningDb {
  readonly location: string;
  /**
   * The workload row for `info`, created on first use: dated now, or `createdAt` (an imported
   * workload keeps its date). An existing row keeps the lower of its and `info`'s rooflineMs: a
   * bandwidth probe is only ever slowed by other processes, so the fastest memory measured is the
   * truest roofline, and every view of the workload's trials takes that one.
   */
  ensureWorkload(info: WorkloadInfo & { createdAt?: string }): Workload;
  /** Config hashes that already have a trial in this workload (any status): what resume skips. */
  measuredConfigs(workloadId: number): Set<string>;
  /** Writes one trial in its own transaction; returns it with its row id. */
  addTrial(workloadId: number, trial: Trial): TrialRow;
  trials(workloadId: number): TrialRow[];
  /**
   * The fastest `ok` trial that competes for the workload's best (`contendingTrials` in
   * src/db/current.ts): each config judged by its newest trial, and once the tuner has re-timed
   * the best few back to back, that re-timing's winner or a config measured after it.
   */
  best(workloadId: number): TrialRow | undefined;
  workloads(filter?: WorkloadFilter): WorkloadSummary[];
  /**
   * The device names the workloads are recorded for, each once, in the order each was first
   * recorded (one query; `workloads` reads every row and its trials). Optional, so a store written
   * against an earlier kgen still fits: callers fall back to `workloads`.
   */
  devices?(): string[];
  workload(id: number): Workload | undefined;
  exportAll(filter?: WorkloadFilter): Exchange;
  importExchange(data: Exchange, origin: string): ImportSummary;
  close(): void;
}
