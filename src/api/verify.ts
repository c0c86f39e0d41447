import { renderHarness } from '../backends/c/index.js';
import type { CRunOptions } from '../backends/c/run.js';
import { checkTools, compileAndRun } from '../backends/c/run.js';
import { C_TOOLCHAINS } from '../backends/c/toolchain.js';
import type { TrialStatus } from '../backends/types.js';
import { KgenError } from '../errors.js';
import type { MatmulOp, MatmulShape } from '../ir/types.js';
import type { Plan } from '../plan/types.js';
import { referenceMatmul } from '../reference/matmul.js';
import type { Comparison, Tolerance } from '../reference/compare.js';
import { compareOutputs, withinTolerance } from '../reference/compare.js';
import { KGEN_VERSION } from '../version.js';
import { fromDtype, makeMatmulData } from './data.js';
import type { EmitOptions } from './emit.js';
import { emit } from './emit.js';

export interface VerifyOptions extends EmitOptions {
  /** Seed of the random inputs. */
  seed?: number;
  /** Build with AddressSanitizer and UndefinedBehaviorSanitizer. */
  sanitize?: boolean;
  /** Fail on compiler warnings. */
  werror?: boolean;
  timeoutMs?: number;
}

export interface VerifyResult {
  status: Exclude<TrialStatus, 'over_budget'>;
  /** False when the kernel was only compiled (this machine cannot run its ISA). */
  ran: boolean;
  plan: Plan;
  tolerance: Tolerance;
  comparison?: Comparison;
  /** Compiler or runtime output for a failure; the reason when it was not run. */
  detail?: string;
  compileMs: number;
  runMs: number;
  /** What ran it: "native", "qemu-aarch64", or "compile only". */
  runner: string;
}

/**
 * Emits the kernel, builds it with the real compiler, runs it on seeded data and compares its
 * output with the f64 reference. A bad kernel is a status in the result, not an exception; a bad
 * request (unknown op, over-budget config, missing compiler) throws KgenError.
 */
export async function verify(opts: VerifyOptions): Promise<VerifyResult> {
  const result = emit(opts);
  const { plan } = result;
  if (plan.target !== 'c' || plan.op.kind !== 'matmul') {
    throw new KgenError({ field: '--target', problem: `verify runs c matmul kernels so far, not ${plan.target} ${plan.op.kind}`, expected: '--target c with a matmul op' });
  }
  const op = plan.op as MatmulOp;
  const shape = plan.shape as MatmulShape;
  const isa = plan.config.isa as string;
  const tc = C_TOOLCHAINS[isa]!;
  await checkTools(tc, true);
  const data = makeMatmulData(op, shape, opts.seed ?? 1);
  const harnessC = renderHarness(plan, { version: KGEN_VERSION, irHash: result.manifest.irHash, command: '' });
  const runOpts: CRunOptions = { sanitize: opts.sanitize, werror: opts.werror, timeoutMs: opts.timeoutMs };
  const run = await compileAndRun(isa, { kernelC: result.files['kernel.c']!, kernelH: result.files['kernel.h']!, harnessC }, data, runOpts);
  const runner = run.compiledOnly ? 'compile only' : tc.runner ? tc.runner[0]! : 'native';
  const base = { plan, tolerance: plan.tolerance, compileMs: run.compileMs, runMs: run.runMs, runner };
  if (run.status !== 'ok') return { ...base, status: run.status, ran: false, detail: run.detail };
  if (run.compiledOnly) return { ...base, status: 'ok', ran: false, detail: run.detail };
  const reference = referenceMatmul(shape, op.epilogue, { x: data.x.values, w: data.w.values, bias: data.bias?.values, residual: data.residual?.values });
  const actual = fromDtype(run.output!, op.y);
  const comparison = compareOutputs(actual, reference);
  const ok = withinTolerance(comparison, reference, plan.tolerance);
  return { ...base, status: ok ? 'ok' : 'wrong_result', ran: true, comparison };
}
