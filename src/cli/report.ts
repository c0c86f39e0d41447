import { basename } from 'node:path';
import type { Command } from 'commander';
import { renderReport, reportData } from '../api/report.js';
import { KgenError } from '../errors.js';
import { pathText } from '../io/message-text.js';
import { writeOutputFile } from '../io/output.js';
import { addDbFlag, cliHost, dbLocation, noTuningDb, openDbForReading, printJson, RECORD_DEVICE_HELP, recordDevice } from './common.js';
import { optionalPath } from './flags.js';

export function registerReport(program: Command): void {
  addDbFlag(
    program
      .command('report')
      .description('write the tuning database as one static HTML page: a roofline plot per device with every trial, the best config per op and shape with its speedup over the default, each search\'s progress, and the device fingerprints (works offline)'),
  )
    .option('-o, --out <file>', 'the HTML file to write')
    .option('--force', 'replace the output file if it exists')
    .option('--json', 'print the report\'s data as JSON instead of writing a page')
    .option('--device <name|file.json>', RECORD_DEVICE_HELP)
    .addHelpText('after', `
The page holds its data, its script and Chart.js inline: no network, open it from disk.

Examples:
  kgen report -o tuning.html
  kgen report --db team.db -o team.html --force
  kgen report --device ./phone.json -o phone.html   (records tuned with --device phone.json, with its roofline)`)
    .action((flags: { db?: string; out?: string; force?: boolean; json?: boolean; device?: string }) => {
      const out = optionalPath(flags.out, '--out', 'an HTML file path');
      if (out === undefined && !flags.json) throw new KgenError({ field: '--out', problem: 'missing', expected: 'the HTML file to write (or --json)' });
      const db = openDbForReading(flags);
      if (!db) throw noTuningDb(flags, 'run `kgen tune` first, or name one with --db');
      let data;
      try {
        const device = recordDevice(flags.device, db);
        data = reportData(db, basename(dbLocation(flags).path), device ? { ...device.options, device: device.name } : cliHost());
      } finally {
        db.close();
      }
      if (flags.json) return printJson(data);
      const { path, field } = dbLocation(flags);
      writeOutputFile(out!, renderReport(data), { field: '--out', force: flags.force, inputs: [{ path, field }] });
      const trials = data.workloads.reduce((n, w) => n + w.trials.length, 0);
      process.stderr.write(`kgen: wrote ${pathText(out!)}: ${data.workloads.length} workloads, ${trials} trials, ${data.devices.length} device fingerprint(s)\n`);
    });
}
