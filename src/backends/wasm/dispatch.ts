import { InternalError } from '../../errors.js';

/**
 * How a threaded WebAssembly loader (kernel.mjs's loadThreaded) hands its workers their shares.
 *
 * Each worker gets one control block, an Int32Array over a SharedArrayBuffer: the caller writes the
 * call's index and its i32 arguments, then bumps `seq` and notifies; the worker, between calls,
 * polls `seq` for a while and then sleeps in Atomics.wait on it; after the call it writes `status`
 * and sets `done` to that seq. Waking a worker by postMessage instead costs an event-loop turn on
 * both sides each call, and measured two-worker runs fell into a slow mode in which the second
 * thread added nothing for a whole process (docs/PERFORMANCE.md, "WebAssembly: two workers,
 * bimodal"). Messages are kept for what is rare: the init, and an error's text.
 */

/** Word indices of a worker's control block; the call's arguments start at `args`. */
export const WORKER_CONTROL = Object.freeze({ seq: 0, done: 1, status: 2, call: 3, args: 4 });

/** `status` after a call: it returned, or it threw (the text follows as a message). `call` = stop ends the worker's loop. */
export const WORKER_STATUS = Object.freeze({ ok: 0, failed: 1 });
export const WORKER_STOP_CALL = -1;

/**
 * Polls of `seq` (a worker waiting for its next call) or of `done` (the caller waiting for a share)
 * before sleeping: 20000 Atomics.load calls took ~0.2 ms in Node 20 on the 2-vCPU Zen 4 VM (11 ns
 * each), longer than the gap between a model's back-to-back calls, so a decode loop does not sleep
 * between them, and short enough that an idle worker soon stops taking a core.
 */
export const WORKER_SPIN_POLLS = 20000;

/**
 * The most threads a loader runs a kernel on (this thread and 255 workers), whatever else limits it:
 * more cores than any machine a page or Node runs on, where every worker instantiates its own copy
 * of the module. A larger count (threads: 1000) is a mistake, refused before any worker starts.
 */
export const LOADER_MAX_THREADS = 256;

/** One export a worker runs: its name and how many i32 arguments it takes. */
export interface WorkerCall {
  name: string;
  args: number;
}

/**
 * What loader/worker.mjs, loader/workers.mjs and loader/threads.mjs print about the dispatch:
 * `maxThreads` is the most threads loadThreaded takes (at most `LOADER_MAX_THREADS`), and
 * `maxThreadsWhy` what bounds it, as the loader's error and docs say it.
 */
export function dispatchView(calls: readonly WorkerCall[], threads: { maxThreads: number; maxThreadsWhy: string }) {
  const argsMax = Math.max(...calls.map((c) => c.args));
  if (!Number.isInteger(threads.maxThreads) || threads.maxThreads < 1 || threads.maxThreads > LOADER_MAX_THREADS) throw new InternalError(`a loader's maxThreads must be in [1, ${LOADER_MAX_THREADS}], not ${threads.maxThreads}`);
  return {
    ...threads,
    workerCallsJson: JSON.stringify(calls),
    controlJson: JSON.stringify({ ...WORKER_CONTROL, words: WORKER_CONTROL.args + argsMax }),
    statusJson: JSON.stringify(WORKER_STATUS),
    stopCall: WORKER_STOP_CALL,
    spinPolls: WORKER_SPIN_POLLS,
  };
}
