import { Command, CommanderError } from 'commander';
import { KgenError } from '../errors.js';
import { KGEN_VERSION } from '../version.js';
import { registerEmit } from './emit.js';
import { registerLists } from './list.js';
import { registerPack } from './pack.js';
import { registerPlan } from './plan.js';
import { registerTune } from './tune.js';
import { registerDb } from './db.js';
import { registerVerify } from './verify.js';

/** Exit codes: 0 ok, 1 a kernel failed verification, 2 a usage error, 70 a kgen bug. */
export async function main(argv: string[]): Promise<void> {
  // A reader that stops early (`kgen plan ... | head`) is not an error: stop quietly, as `cat` does.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(0);
  });
  const program = new Command('kgen')
    .version(KGEN_VERSION)
    .description('kernel generator and autotuner for quantized matmul and attention: plans against device budgets, renders C (scalar, AVX2, AVX-512, NEON) and CUDA, verifies against an f64 reference, tunes configs on the device present and records them in SQLite; WGSL and WebAssembly next')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .showSuggestionAfterError(false)
    .addHelpText('after', `
Examples:
  kgen ops                                   list the op catalog
  kgen devices                               list device profiles, * marks those present
  kgen emit --target c --op matmul_q35 --shape M=1,N=4096,K=4096 -o out/
  kgen verify --target c --op matmul_q4_0 --shape M=3,N=77,K=320
  kgen pack --format q4_0 --shape N=4096,K=4096 --in w.f32 -o w.q4_0
  kgen plan --target cuda --device h100-sxm --op matmul_q4 --shape M=256,N=4096,K=4096
  kgen tune --device host --op matmul_q4 --shape M=1,N=4096,K=4096 --trials 40
  kgen db list`);
  registerEmit(program);
  registerVerify(program);
  registerPack(program);
  registerPlan(program);
  registerLists(program);
  registerTune(program);
  registerDb(program);
  for (const cmd of program.commands) cmd.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; commander already printed its one-line message for the rest
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof KgenError) {
      process.stderr.write(`kgen: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}
