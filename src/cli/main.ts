import { Command, CommanderError } from 'commander';
import { KgenError } from '../errors.js';
import { oneLine, quoted } from '../io/message-text.js';
import { KGEN_VERSION } from '../version.js';
import { registerEmit } from './emit.js';
import { registerLists } from './list.js';
import { registerGguf } from './gguf.js';
import { registerPack } from './pack.js';
import { registerReport } from './report.js';
import { registerPlan } from './plan.js';
import { registerTune } from './tune.js';
import { registerDb } from './db.js';
import { registerVerify } from './verify.js';

let epipeHandled = false;

/** A reader that stops early (`kgen plan ... | head`) is not an error: stop quietly, as `cat` does. */
function stopQuietlyOnEpipe(): void {
  if (epipeHandled) return;
  epipeHandled = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(0);
  });
}

/** Exit codes: 0 ok, 1 a kernel failed verification, 2 a usage error, 70 a kgen bug. */
export async function main(argv: string[]): Promise<void> {
  let usageMessage = '';
  stopQuietlyOnEpipe();
  const program = new Command('kgen')
    .version(KGEN_VERSION)
    .description('kernel generator and autotuner for quantized matmul and attention: plans against device budgets, renders C (scalar, AVX2, AVX-VNNI, AVX-512, NEON), CUDA, WGSL and WebAssembly (SIMD128, relaxed SIMD), verifies against an f64 reference, tunes configs on the device present and records them in SQLite, and packages kernels for other runtimes')
    .exitOverride()
    // Commander's own usage errors are held back and printed by `main` as one line with a hint.
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: (s) => void (usageMessage = s) })
    .addHelpText('after', `
Examples:
  kgen ops                                   list the op catalog
  kgen devices                               list device profiles, * marks those present
  kgen emit --target c --op matmul_q35 --shape M=1,N=4096,K=4096 -o out/
  kgen verify --target c --op matmul_q4_0 --shape M=3,N=77,K=320
  kgen pack --format q4_0 --shape N=4096,K=4096 --in w.f32 -o w.q4_0
  kgen unpack --in w.q4_0 -o w.dequant.f32
  kgen gguf model.gguf                       list its tensors and the emit command per matmul shape
  kgen plan --target cuda --device h100-sxm --op matmul_q4 --shape M=256,N=4096,K=4096
  kgen tune --device host --op matmul_q4 --shape M=1,N=4096,K=4096 --trials 40
  kgen db list
  kgen report -o tuning.html                  the tuning database as a page: rooflines, best configs, progress`);
  registerEmit(program);
  registerVerify(program);
  registerPack(program);
  registerGguf(program);
  registerPlan(program);
  registerLists(program);
  registerTune(program);
  registerDb(program);
  registerReport(program);
  for (const cmd of program.commands) cmd.exitOverride();
  // Commander answers `kgen NOSUCH --help` with the top-level help, as if NOSUCH were understood.
  // So does `kgen help NOSUCH`, then exits 1 with the message "(outputHelp)".
  const first = argv[2] === 'help' ? argv[3] : argv[2];
  if (first !== undefined && !first.startsWith('-') && first !== 'help' && !program.commands.some((c) => c.name() === first || c.aliases().includes(first))) {
    const near = nearestCommand(program.commands.map((c) => c.name()), first);
    const why = first === 'bench' ? ' (benchmarks run from a checkout of kgen: `npm run bench`, bench/README.md)' : near ? ` (did you mean ${near}?)` : '';
    process.stderr.write(`kgen: unknown command '${oneLine(first, 60)}'${why}; run \`kgen --help\` for what it accepts\n`);
    process.exitCode = 2;
    return;
  }
  program.hook('preAction', (_root, action) => refuseRepeatedValues(action, argv.slice(2)));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version exit 0; the rest are usage errors: one line, with what to do next
      // `help NOSUCH` (below kgen, or `help help`) printed the help as an error: say which word was not a command.
      const text = err.message === '(outputHelp)' ? `help: ${quoted(argv.at(-1) ?? '')} is not a command`
        : err.code === 'commander.excessArguments' ? excessText(commandPath(program, argv))
        : usageMessage || err.message;
      if (err.exitCode !== 0) process.stderr.write(`${commanderLine(text, program, argv)}\n`);
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof KgenError) {
      process.stderr.write(`kgen: ${oneLine(err.message, 2000)}\n`);
      process.exitCode = 2;
      return;
    }
    // Test data or weights too large for the memory this process may take (a limit below the RAM
    // the up-front check counts, or a busy machine): one line, not a stack.
    if (err instanceof RangeError && /allocation failed|Invalid (typed )?array length/i.test(err.message)) {
      process.stderr.write(`kgen: not enough memory for this command (${err.message}); choose a smaller shape or free memory\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}

/**
 * A flag that takes a value may be given once: commander would keep the last of several silently
 * (`--config A --config B` dropping A), where a repeated key inside one `--shape` is already an error.
 */
function refuseRepeatedValues(action: Command, args: readonly string[]): void {
  const valued = action.options.filter((o) => o.required || o.optional);
  const seen = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const token = args[i]!;
    if (token === '--') break;
    const opt = valued.find((o) => token === o.long || token === o.short || token.startsWith(`${o.long}=`));
    if (!opt) continue;
    const name = opt.long ?? opt.short!;
    if (seen.has(name)) throw new KgenError({ field: name, problem: 'given twice', expected: 'one value', hint: `keep the ${name} you mean and drop the other` });
    seen.add(name);
    // The next token is this flag's value (a required one always; an optional one unless it is a flag).
    if (!token.includes('=') && (opt.required || (i + 1 < args.length && !args[i + 1]!.startsWith('-')))) i++;
  }
}

/** A commander usage error as kgen prints every usage error: one line naming where to look. */
function commanderLine(message: string, program: Command, argv: string[]): string {
  // Commander's "(Did you mean --target?)" on a line of its own joins the one line.
  const text = oneLine(message.replace(/^error:\s*/, '').replace(/\s*\(Did you mean ([^)]*)\)\s*$/, ' (did you mean $1)'), 300).replace(/[.;]+$/, '');
  const help = ['kgen', ...commandPath(program, argv).map((c) => c.name()), '--help'].join(' ');
  return `kgen: ${text}; run \`${help}\` for what it accepts`;
}

/** The commands the words of `argv` name, outermost first (`kgen db list` -> db, list). */
function commandPath(program: Command, argv: string[]): Command[] {
  const words = argv.slice(2);
  const path: Command[] = [];
  for (let cmd: Command | undefined = program; cmd; ) {
    cmd = cmd.commands.find((c) => words.includes(c.name()));
    if (cmd) path.push(cmd);
  }
  return path;
}

/**
 * Commander's "too many arguments" names no word; this names the first extra one. Commander keeps
 * a command's operands in `args` when it refuses them, and the extras follow its declared arguments.
 */
function excessText(path: readonly Command[]): string {
  const cmd = path.at(-1);
  if (!cmd) return 'too many arguments';
  const declared = cmd.registeredArguments;
  const extra = cmd.args.slice(declared.length);
  const takes = declared.length ? `takes ${declared.map((a) => `<${a.name()}>`).join(' ')} only` : 'takes flags only';
  const more = extra.length > 1 ? ` (and ${extra.length - 1} more)` : '';
  return `unexpected argument ${quoted(extra[0] ?? '')}${more}: ${path.map((c) => c.name()).join(' ')} ${takes}; if it is a flag's value, put its flag before it`;
}

/**
 * The command a typo was nearest (`plank` -> plan, not pack), within half the command's length;
 * ties go to the command listed first. Undefined where none is that near.
 */
function nearestCommand(names: readonly string[], typed: string): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of names) {
    const distance = editDistance(name, typed);
    if (distance <= Math.floor((name.length + 1) / 2) && (!best || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/** Levenshtein distance, for the command a typo was near (`emitt` -> emit). */
function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}
