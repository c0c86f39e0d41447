import { runnerFor } from '../backends/registry.js';
import type { KernelRunner, TrialStatus } from '../backends/types.js';
import { opKit } from '../ops/index.js';
import type { TestDataCache } from '../ops/test-data-cache.js';
import type { Plan } from '../plan/types.js';
import type { Comparison, Tolerance } from '../reference/compare.js';
import type { ConfigSource, EmitOptions } from './emit.js';
import { emit } from './emit.js';
import { checkRunFits } from './run-memory.js';
import { checkMembers } from './request.js';
import { KgenError } from '../errors.js';
import { valueText } from '../io/message-text.js';

export interface VerifyOptions extends EmitOptions {
  /** Seed of the random inputs. */
  seed?: number;
  /** Build with AddressSanitizer and UndefinedBehaviorSanitizer. */
  sanitize?: boolean;
  /** Fail on compiler warnings. */
  werror?: boolean;
  timeoutMs?: number;
  /**
   * What builds and runs the kernel; default the target's runner for this machine (for CUDA the GPU
   * when one can run it, else the CPU shim). Tests pin one, e.g. the shim on a machine with a GPU.
   */
  runner?: KernelRunner;
  /**
   * Where the seeded inputs and their f64 reference come from: a TestDataCache shared by calls that
   * verify one op at one shape on several ISAs or targets draws them once. Default: drawn afresh.
   */
  testData?: TestDataCache;
}

export interface VerifyResult {
  status: TrialStatus;
  /** Where the config came from (as in the manifest: the default, --config, or a tuning record). */
  configSource: ConfigSource;
  /** What the caller should be told (emit's notes: which record the config came from). */
  notes: string[];
  /** False when the kernel was only compiled (this machine cannot run it). */
  ran: boolean;
  plan: Plan;
  /** The bounds the output was judged by: the plan's, widened where it states an input rounding (Tolerance.inputRounding). */
  tolerance: Tolerance;
  comparison?: Comparison;
  /** Compiler or runtime output for a failure; the reason when it was not run. */
  detail?: string;
  compileMs: number;
  runMs: number;
  /** What ran it: "native", "qemu-aarch64", ... or "compile only". */
  runner: string;
}

/** An optional whole-number option within [min, max], else a KgenError naming it. */
function checkCount(value: unknown, field: string, min: number, max: number): void {
  if (value === undefined || (Number.isInteger(value) && (value as number) >= min && (value as number) <= max)) return;
  throw new KgenError({ field, problem: `got ${valueText(value, 40)}`, expected: `a whole number from ${min} to ${max}` });
}

/**
 * Emits the kernel, builds it with the real compiler, runs it on seeded data (the op kit's) and
 * compares its output with the f64 reference. A bad kernel is a status in the result, not an
 * exception; a bad request (unknown op, over-budget config, missing compiler) throws KgenError.
 */
export async function verify(opts: VerifyOptions): Promise<VerifyResult> {
  const result = emit(opts);
  checkCount(opts.seed, 'seed', 0, 2 ** 32 - 1);
  checkCount(opts.timeoutMs, 'timeoutMs', 1, 2 ** 31 - 1);
  checkMembers(opts.runner, {
    field: 'runner',
    members: { name: 'string', cannotExecute: 'function', build: 'function', execute: 'function' },
    expected: 'a KernelRunner (name, cannotExecute, build, execute)',
    hint: "leave runner out to take the target's runner for this machine",
  });
  checkMembers(opts.testData, {
    field: 'testData',
    members: { testData: 'function' },
    expected: 'a TestDataCache (new TestDataCache())',
    hint: 'leave testData out to draw the inputs and their reference afresh',
  });
  const { plan } = result;
  const runner = opts.runner ?? runnerFor(plan);
  for (const flag of ['sanitize', 'werror'] as const) {
    if (opts[flag] && !runner.buildFlags?.includes(flag)) {
      throw new KgenError({
        field: `--${flag}`,
        problem: `${plan.target} kernels build and run here through ${runner.name}, which has ${flag === 'sanitize' ? 'no sanitizer build' : 'no compiler warnings to fail on'}`,
        expected: `no --${flag} for this target`,
        hint: `leave --${flag} out: the run checks the output against the reference either way`,
      });
    }
  }
  checkRunFits(plan, 'kgen verify');
  const build = await runner.build(plan, result.rendered, { werror: opts.werror, sanitize: opts.sanitize, timeoutMs: opts.timeoutMs });
  const base = { plan, configSource: result.manifest.configSource, notes: result.notes, tolerance: plan.tolerance, compileMs: build.compileMs, runMs: 0, runner: runner.name };
  if (build.status !== 'ok') return { ...base, status: build.status, ran: false, detail: build.detail };
  try {
    const why = runner.cannotExecute(plan);
    if (why) return { ...base, status: 'ok', ran: false, detail: why, runner: 'compile only' };
    const data = (opts.testData ?? opKit(plan.op.kind)).testData(plan.op, plan.shape, opts.seed ?? 1);
    const run = await runner.execute(build, data.inputs, { timeoutMs: opts.timeoutMs });
    if (run.status !== 'ok') return { ...base, runMs: run.runMs, status: run.status, ran: false, detail: run.detail };
    const { ok, comparison, tolerance } = data.check(run.output, plan.tolerance);
    return { ...base, tolerance, runMs: run.runMs, status: ok ? 'ok' : 'wrong_result', ran: true, comparison };
  } finally {
    build.dispose();
  }
}
