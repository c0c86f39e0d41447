import type { Command } from 'commander';
import { verify } from '../api/verify.js';
import { formatShape } from '../ir/validate.js';
import { opKit } from '../ops/index.js';
import { roundingCodesText, type Tolerance } from '../reference/compare.js';
import type { KernelFlags } from './common.js';
import { addDbFlag, addKernelFlags, printJson, toRequest, withRecords } from './common.js';
import { parseSeed } from './flags.js';

export function registerVerify(program: Command): void {
  const cmd = program
    .command('verify')
    .description('compile a kernel with the real compiler, run it on seeded data and compare with the f64 reference')
    .option('--seed <n>', 'seed of the random inputs', '1')
    .option('--sanitize', 'build with AddressSanitizer and UndefinedBehaviorSanitizer (C; CUDA: the CPU shim, or compute-sanitizer on a GPU); refused where the target has no sanitizer build')
    .option('--werror', 'treat compiler warnings as errors (C, CUDA; refused where the target has no compiler warnings)')
    .option('--no-records', 'ignore the tuning database: verify --config or the default config');
  addDbFlag(cmd);
  addKernelFlags(cmd).addHelpText(
    'after',
    `
Without --config it checks the config emit would write: the tuning database's record for this
device, op and shape (or the nearest shape; with --isa, that ISA's fastest) where there is one,
else the default.

Exit status: 0 when the output is within tolerance, 1 on a mismatch, crash or compile error, or a kernel this machine cannot run (unsupported: the adapter lacks a feature, nvcc lacks the arch), 2 on a usage error.

Examples:
  kgen verify --target c --op matmul_q35 --shape M=1,N=77,K=320
  kgen verify --target c --op matmul_q4_0 --shape M=3,N=4096,K=4096 --isa neon --device apple-m2   (runs under qemu-aarch64)
  kgen verify --target c --op matmul_q8 --shape M=64,N=77,K=320 --sanitize --json
  kgen verify --target cuda --op matmul_q35 --shape M=3,N=77,K=320   (on the GPU when nvidia-smi finds one, else through kgen's CPU shim; the output says which)`,
  );
  cmd.action(async (flags: KernelFlags & { seed: string; sanitize?: boolean; werror?: boolean; db?: string; records: boolean }) => {
    const seed = parseSeed(flags.seed);
    const request = toRequest(flags);
    const r = await withRecords(flags, (records) => verify({ ...request, records, seed, sanitize: flags.sanitize, werror: flags.werror }));
    for (const note of r.notes) process.stderr.write(`kgen: ${note}\n`);
    // A run-time-length attention kernel is checked at several KV lengths: say which.
    const kvLengths = opKit(r.plan.op.kind).checkedKvLengths(r.plan.op, r.plan.shape);
    const what = `${r.plan.op.name} ${r.plan.target}/${String(r.plan.config.isa ?? r.plan.variant)} ${formatShape(r.plan.shape)}${kvLengths ? ` at kv_len ${kvLengths.join(', ')}` : ''}`;
    if (flags.json) {
      printJson({ status: r.status, ran: r.ran, runner: r.runner, op: r.plan.op.name, shape: r.plan.shape, config: r.plan.config, configSource: r.configSource, ...(kvLengths ? { kvLengths } : {}), comparison: r.comparison, tolerance: r.tolerance, detail: r.detail, compileMs: Math.round(r.compileMs), runMs: Math.round(r.runMs) });
    } else if (r.status === 'ok' && r.ran && r.comparison) {
      const c = r.comparison;
      process.stdout.write(`ok: ${what}: max abs error ${c.maxAbsError.toExponential(2)}, NMSE ${c.nmse.toExponential(2)} (${toleranceText(r.tolerance, r.plan.tolerance)}), ran ${r.runner}\n`);
    } else if (r.status === 'ok') {
      process.stdout.write(`compiled only: ${what}: ${r.detail}; nothing was run\n`);
    } else if (r.status === 'unsupported') {
      process.stdout.write(`not runnable here: ${what}: ${r.detail}; nothing was compiled or run\n`);
    } else if (r.status === 'wrong_result' && r.comparison) {
      const c = r.comparison;
      process.stdout.write(`MISMATCH: ${what}: max abs error ${c.maxAbsError.toExponential(2)} at element ${c.worstIndex}, NMSE ${c.nmse.toExponential(2)}, ${c.nonFinite} non-finite (${toleranceText(r.tolerance, r.plan.tolerance)})\n`);
    } else {
      process.stdout.write(`${r.status}: ${what}\n${r.detail ?? ''}\n`);
    }
    process.exitCode = r.status === 'ok' ? 0 : 1;
  });
}

/** The NMSE bound judged by, and why it is wider than the plan's where it is. */
function toleranceText(judged: Tolerance, stated: Tolerance): string {
  const bound = `tolerance NMSE ${judged.nmse.toExponential(1)}`;
  const rounding = stated.inputRounding;
  if (!rounding || (judged.nmse === stated.nmse && judged.maxRelToPeak === stated.maxRelToPeak)) return bound;
  return `${bound}: the plan's ${stated.nmse.toExponential(1)} plus ${rounding.factor}x the error of rounding ${rounding.input} to ${roundingCodesText(rounding)} per ${rounding.group} values alone on these inputs`;
}
