import { backendFor } from '../backends/registry.js';
import type { KernelRunner, TrialStatus } from '../backends/types.js';
import { KgenError } from '../errors.js';
import type { MatmulOp, MatmulShape } from '../ir/types.js';
import type { Plan } from '../plan/types.js';
import { referenceMatmul } from '../reference/matmul.js';
import type { Comparison, Tolerance } from '../reference/compare.js';
import { compareOutputs, withinTolerance } from '../reference/compare.js';
import type { MatmulData } from './data.js';
import { fromDtype, makeMatmulData, matmulInputs } from './data.js';
import type { EmitOptions } from './emit.js';
import { emit } from './emit.js';
import { checkRunFits } from './run-memory.js';

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
}

export interface VerifyResult {
  status: Exclude<TrialStatus, 'over_budget'>;
  /** False when the kernel was only compiled (this machine cannot run it). */
  ran: boolean;
  plan: Plan;
  tolerance: Tolerance;
  comparison?: Comparison;
  /** Compiler or runtime output for a failure; the reason when it was not run. */
  detail?: string;
  compileMs: number;
  runMs: number;
  /** What ran it: "native", "qemu-aarch64", ... or "compile only". */
  runner: string;
}

/** The runner for a plan, or a KgenError when its target only renders so far. */
export function runnerForPlan(plan: Plan): KernelRunner {
  const backend = backendFor(plan.target);
  if (!backend.runnerFor || plan.op.kind !== 'matmul') {
    throw new KgenError({
      field: plan.op.kind !== 'matmul' ? '--op' : '--target',
      problem: `kgen cannot build and run ${plan.target} ${plan.op.kind} kernels yet`,
      expected: 'a matmul op on a target with a runner',
      hint: '`kgen emit` still renders it; `kgen ops` lists what each target supports',
    });
  }
  return backend.runnerFor(plan);
}

/** Judges a kernel's raw output against the f64 reference with the plan's tolerance. */
export function judgeMatmul(plan: Plan, output: Uint8Array, reference: Float64Array): { ok: boolean; comparison: Comparison } {
  const comparison = compareOutputs(fromDtype(output, (plan.op as MatmulOp).y), reference);
  return { ok: withinTolerance(comparison, reference, plan.tolerance), comparison };
}

/** The f64 reference output for seeded matmul inputs. */
export function matmulReference(plan: Plan, data: MatmulData): Float64Array {
  const op = plan.op as MatmulOp;
  return referenceMatmul(plan.shape as MatmulShape, op.epilogue, { x: data.x.values, w: data.w.values, bias: data.bias?.values, residual: data.residual?.values });
}

/**
 * Emits the kernel, builds it with the real compiler, runs it on seeded data and compares its
 * output with the f64 reference. A bad kernel is a status in the result, not an exception; a bad
 * request (unknown op, over-budget config, missing compiler) throws KgenError.
 */
export async function verify(opts: VerifyOptions): Promise<VerifyResult> {
  const result = emit(opts);
  const { plan } = result;
  const runner = opts.runner ?? runnerForPlan(plan);
  checkRunFits(plan, 'kgen verify');
  const build = await runner.build(plan, result.rendered, { werror: opts.werror, sanitize: opts.sanitize, timeoutMs: opts.timeoutMs });
  const base = { plan, tolerance: plan.tolerance, compileMs: build.compileMs, runMs: 0, runner: runner.name };
  if (build.status !== 'ok') return { ...base, status: 'compile_error', ran: false, detail: build.detail };
  try {
    const why = runner.cannotExecute(plan);
    if (why) return { ...base, status: 'ok', ran: false, detail: why, runner: 'compile only' };
    const data = makeMatmulData(plan.op as MatmulOp, plan.shape as MatmulShape, opts.seed ?? 1);
    const run = await runner.execute(build, matmulInputs(data), { timeoutMs: opts.timeoutMs });
    if (run.status !== 'ok') return { ...base, runMs: run.runMs, status: run.status, ran: false, detail: run.detail };
    const { ok, comparison } = judgeMatmul(plan, run.output, matmulReference(plan, data));
    return { ...base, runMs: run.runMs, status: ok ? 'ok' : 'wrong_result', ran: true, comparison };
  } finally {
    build.dispose();
  }
}
