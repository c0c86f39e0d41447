import { hostname } from 'node:os';
import type { Command } from 'commander';
import { resolveRequest } from '../api/request.js';
import { importRunResult } from '../backends/registry.js';
import { validateExchange } from '../db/exchange.js';
import { describeChoice, figuresNotes, otherFiguresText, recordedConfig, recordedConfigView, workloadFigures } from '../db/lookup.js';
import { notRunnable, notRunnableText } from '../db/not-runnable.js';
import { importedRunExchange } from '../db/run-result.js';
import type { TuningDb, WorkloadFilter } from '../db/types.js';
import { KgenError } from '../errors.js';
import { formatShape } from '../ir/validate.js';
import { getDevice } from '../device/index.js';
import { parseJsonInput, RECORDS_JSON } from '../io/json-input.js';
import { pathText } from '../io/message-text.js';
import { writeOutputFile } from '../io/output.js';
import { configInUse, spaceFor } from '../plan/index.js';
import type { ResolvedRequest } from '../api/request.js';
import { addDbFlag, cliHost, dbLocation, fmtMs, noTuningDb, targetChoices, openDbForReading, openDbForWriting, printJson, readIr, readUserFile, RECORD_DEVICE_HELP, recordDevice, table } from './common.js';
import { optionalPath, parseCount } from './flags.js';
import { performanceRow } from './tune.js';

interface DbFlags {
  db?: string;
  json?: boolean;
}

/** Runs `f` on the database opened for reading; nothing is created or changed. */
function withDb<T>(flags: DbFlags, f: (db: TuningDb) => T): T {
  const db = openDbForReading(flags);
  if (!db) throw noTuningDb(flags, 'run `kgen tune` first, or `kgen db import FILE`');
  try {
    return f(db);
  } finally {
    db.close();
  }
}

/** `withDb` after `check` passed: the request is validated before the database is opened. */
function withDbChecked<T>(check: () => ResolvedRequest, flags: DbFlags, f: (db: TuningDb, req: ResolvedRequest) => T): T {
  const req = check();
  return withDb(flags, (d) => f(d, req));
}

/** The records `db list` and `db export` keep: --device as `recordDevice` resolves it (given here where the caller resolved it already), --target, --op. */
function filterOf(flags: { device?: string; target?: string; op?: string }, db: TuningDb, device = recordDevice(flags.device, db)): WorkloadFilter {
  return { device: device?.name, target: flags.target, opName: flags.op };
}

/** `db list`'s device column: the name, marked where the profile now has other figures than the workload was tuned under (emit passes it over). */
function deviceShown(name: string, figures: ReturnType<typeof workloadFigures>): string {
  return figures === 'other' ? `${name} (other figures)` : name;
}

export function registerDb(program: Command): void {
  const db = program
    .command('db')
    .description('inspect, export and import the tuning database')
    .addHelpText(
      'after',
      `
Examples:
  kgen db list
  kgen db show 3
  kgen db best --op matmul_q4 --shape M=1,N=4096,K=4096 --device host
  kgen db export -o host-records.json
  kgen db import gpu-box.json`,
    );

  const filterFlags = (c: Command) =>
    c.option('--device <name|file.json>', RECORD_DEVICE_HELP).option('--target <target>', 'only this target').option('--op <name>', 'only this op').option('--json', 'machine-readable output');

  addDbFlag(filterFlags(db.command('list').description('workloads with their trial counts and best time'))).addHelpText('after', '\nExamples:\n  kgen db list\n  kgen db list --device host --op matmul_q4 --json\n  kgen db list --device ./phone.json').action((flags: DbFlags & { device?: string; target?: string; op?: string }) =>
    withDb(flags, (d) => {
      const selected = recordDevice(flags.device, d);
      const rows = d.workloads(filterOf(flags, d, selected));
      // The profiles the figures are judged by: kgen's, and the caller's own file given as --device.
      const devices = selected?.options ?? cliHost();
      const figures = new Map(rows.map((w) => [w.id, workloadFigures(w, devices)]));
      if (flags.json) return printJson(rows.map(({ best, ...w }) => ({ ...w, figures: figures.get(w.id), best: best && { config: best.config, ...performanceRow(w, best) } })));
      if (!rows.length) return void process.stdout.write(`no workloads in ${d.location}${flags.device || flags.op || flags.target ? ' match' : ''}\n`);
      // Trials this machine could not run are no failure of their configs: a column of their own.
      const lines = [['id', 'device', 'target', 'op', 'shape', 'trials', 'ok', 'failed', 'not run', 'best ms', 'kgen']];
      for (const w of rows) {
        const ok = w.byStatus.ok ?? 0;
        const notRun = w.byStatus.unsupported ?? 0;
        lines.push([String(w.id), deviceShown(w.device, figures.get(w.id)), w.target, w.op.name, formatShape(w.shape), String(w.trials), String(ok), String(w.trials - ok - notRun), String(notRun), fmtMs(w.best?.timing?.medianMs), w.kgenVersion]);
      }
      process.stdout.write(`${table(lines)}\n(${d.location})\n`);
    }),
  );

  addDbFlag(db.command('show').description('one workload and its trials, fastest first').argument('<workload>', 'workload id (see `kgen db list`)').option('--json', 'machine-readable output').option('--limit <n>', 'trials the table shows (--json holds every trial)', '20'))
    .addHelpText('after', '\nExamples:\n  kgen db show 3\n  kgen db show 3 --limit 100\n  kgen db show 3 --json                every trial, with its whole config and timing')
    .action((id: string, flags: DbFlags & { limit: string }) => {
      const workloadId = parseCount(id, 'workload', { min: 1, max: Number.MAX_SAFE_INTEGER });
      const limit = parseCount(flags.limit, '--limit', { min: 1, max: 1_000_000 });
      return withDb(flags, (d) => {
        const w = d.workload(workloadId);
        if (!w) throw new KgenError({ field: 'workload', problem: `no workload ${workloadId} in ${pathText(d.location)}`, expected: 'an id from `kgen db list`' });
        const trials = d.trials(w.id);
        if (flags.json) return printJson({ workload: w, trials });
        process.stdout.write(`workload ${w.id}: ${w.op.name} ${formatShape(w.shape)} on ${w.device} (${w.target}), kgen ${w.kgenVersion}, template ${w.templateHash}\n`);
        process.stdout.write(`fingerprint: ${JSON.stringify(w.fingerprint)}\n`);
        if (workloadFigures(w, cliHost()) === 'other') process.stdout.write(`${otherFiguresText([w], getDevice(w.device, cliHost()))}: emit passes these records over\n`);
        const counts = new Map<string, number>();
        for (const t of trials) counts.set(t.status, (counts.get(t.status) ?? 0) + 1);
        process.stdout.write(`trials: ${[...counts].map(([s, n]) => `${n} ${s}`).join(', ') || 'none'}\n`);
        const notRun = notRunnableText(notRunnable(trials));
        if (notRun) process.stdout.write(`${notRun} (status unsupported: no verdict on those configs)\n`);
        // The best as emit takes it (after a re-timing, the re-timed verdict), marked with *.
        const best = d.best(w.id);
        // Each config as emit and tune print it (the knobs in use); --json keeps the whole record.
        const shown = recordedConfigView(w, cliHost());
        const lines = [['status', 'time ms', 'GB/s', '% roofline', 'spread', 'strategy', 'config / error']];
        for (const t of trials.slice(0, limit)) {
          const p = t.timing ? performanceRow(w, t) : undefined;
          lines.push([`${t.status}${t.id === best?.id ? '*' : ''}`, fmtMs(t.timing?.medianMs), p ? p.gbps.toFixed(1) : '-', p ? `${p.roofline.toFixed(0)}%` : '-', t.timing ? `${(100 * t.timing.spread).toFixed(0)}%` : '-', t.strategy ?? '-', `${JSON.stringify(shown(t.config))}${t.error ? `  ${t.error.split('\n')[0]!.slice(0, 100)}` : ''}`]);
        }
        process.stdout.write(`${table(lines)}\n${best ? '(* = the best, which emit takes)\n' : ''}`);
      });
    });

  addDbFlag(
    db
      .command('best')
      .description('the config emit would take for an op and shape: the best record, else the nearest recorded shape')
      .option('--device <name>', 'device profile', 'host')
      .option('--target <target>', `${targetChoices()} (default: the device's first target, see \`kgen devices\`)`)
      .option('--op <name>', 'catalog op')
      .option('--ir <file>', 'your own op as a JSON file')
      .requiredOption('--shape <dims>', 'dimensions, e.g. M=1,N=4096,K=4096')
      .option('--json', 'machine-readable output'),
  )
    .addHelpText('after', '\nExamples:\n  kgen db best --op matmul_q4 --shape M=1,N=4096,K=4096\n  kgen db best --device rtx4090 --target cuda --op matmul_q35 --shape M=1,N=4096,K=14336 --json')
    .action((flags: DbFlags & { device: string; target?: string; op?: string; ir?: string; shape: string }) =>
      withDbChecked(
        // The same checks as emit (target of the device, shape, op) before the database is opened.
        () => {
          const host = cliHost();
          // A profile file is read once, here; the request carries the profile.
          const device = getDevice(flags.device, host);
          const req = resolveRequest({ target: flags.target ?? device.targets[0]!, op: flags.op, ir: flags.ir !== undefined ? readIr(flags.ir) : undefined, shape: flags.shape, device, ...host });
          spaceFor(req);
          return req;
        },
        flags,
        (d, req) => {
        const choice = recordedConfig(d, req);
        const notes = figuresNotes(d, req, choice);
        if (flags.json) {
          return printJson({ ...(choice ? { source: choice.source, config: choice.resolved.plan.config, workloadId: choice.workload.id, shape: choice.workload.shape, trial: choice.trial } : { source: 'default' }), ...(notes.length ? { notes } : {}) });
        }
        for (const note of notes) process.stderr.write(`kgen: ${note}\n`);
        if (!choice) {
          // Records of other shapes whose best configs this shape rules out (a query tile past Sq, a knob it lacks) are not "no record".
          const shapes = notes.length ? 0 : d.workloads({ device: req.device.name, target: req.target, irHash: req.irHash }).length;
          const other = shapes ? ` whose config this shape takes (the best configs of its ${shapes} recorded shape${shapes === 1 ? '' : 's'} are not legal here)` : '';
          return void process.stdout.write(`no record for ${req.op.name} on ${req.device.name} (${req.target})${notes.length ? ' under its current figures' : other}; emit uses the default config\n`);
        }
        process.stdout.write(`${JSON.stringify(configInUse(choice.resolved.plan))}\n${describeChoice(choice)}; workload ${choice.workload.id}\n`);
      }),
    );

  addDbFlag(
    db
      .command('export')
      .description('write workloads and every trial as JSON (for another machine or a repository)')
      .option('-o, --out <file>', 'write here (default: stdout)')
      .option('--force', 'replace the output file if it exists')
      .option('--device <name|file.json>', RECORD_DEVICE_HELP)
      .option('--target <target>', 'only this target')
      .option('--op <name>', 'only this op'),
  )
    .addHelpText('after', '\nExamples:\n  kgen db export -o records.json\n  kgen db export --device host --op matmul_q4 > q4.json')
    .action((flags: DbFlags & { out?: string; force?: boolean; device?: string; target?: string; op?: string }) => {
      const out = optionalPath(flags.out, '--out', 'an output file path');
      return withDb(flags, (d) => {
        const text = `${JSON.stringify(d.exportAll(filterOf(flags, d)), null, 1)}\n`;
        if (out !== undefined) {
          const { path, field } = dbLocation(flags);
          writeOutputFile(out, text, { field: '--out', force: flags.force, inputs: [{ path, field }] });
          process.stderr.write(`kgen: wrote ${pathText(out)}\n`);
        } else {
          process.stdout.write(text);
        }
      });
    });

  addDbFlag(
    db
      .command('import')
      .description('merge an exported file, or the result.json of an emitted CUDA run.sh: new workloads and trials are added, trials already present are skipped')
      .argument('<file>', 'a file written by `kgen db export`, or by run.sh on a GPU box')
      .option('--json', 'machine-readable output'),
  )
    .addHelpText('after', '\nExamples:\n  kgen db import gpu-box.json\n  kgen db import records.json --db team.db\n  kgen db import q35/result.json        (written by `sh run.sh` next to an emitted CUDA kernel)')
    .action((file: string, flags: DbFlags) => {
      optionalPath(flags.db, '--db', 'a database file path');
      const expected = 'a file written by `kgen db export` or run.sh';
      const parsed = parseJsonInput(readUserFile(file, 'import', RECORDS_JSON.maxChars), { field: 'import', source: pathText(file), expected, limits: RECORDS_JSON });
      // The whole file is checked before the database is opened (or created).
      // A target's run-kit result (CUDA's run.sh) becomes one workload; anything else is an export.
      const run = importRunResult(parsed);
      const data = run ? importedRunExchange(run) : validateExchange(parsed);
      const d = openDbForWriting(flags);
      try {
        const s = d.importExchange(data, `import from ${hostname()}:${file}`);
        if (flags.json) return printJson({ ...s, database: d.location });
        process.stdout.write(`imported ${file} into ${d.location}: ${s.workloadsAdded} new workloads, ${s.trialsAdded} new trials, ${s.trialsPresent} already present\n`);
      } finally {
        d.close();
      }
    });
}
