import type { Command } from 'commander';
import { targetsRendering } from '../backends/registry.js';
import { allDevices, describeGpu, detectGpus, detectPresence, matchGpuProfile } from '../device/index.js';
import { CATALOG, CATALOG_DESCRIPTIONS } from '../ir/catalog.js';
import { opHash } from '../ir/validate.js';
import { cliHost, printJson, table } from './common.js';

/** The other way to name a device, said where the profiles are listed (validateProfile checks the file). */
const OWN_PROFILE = 'Another device: write its profile (like targets/webgpu.json) and pass --device FILE.json to emit, verify, plan or tune (docs/ARCHITECTURE.md, "Device profiles").';

export function registerLists(program: Command): void {
  program
    .command('ops')
    .description('list the catalog of ops')
    .option('--json', 'machine-readable output')
    .addHelpText('after', '\nExamples:\n  kgen ops\n  kgen ops --json')
    .action((flags: { json?: boolean }) => {
      const rows = Object.entries(CATALOG).map(([name, op]) => ({
        name,
        kind: op.kind,
        irHash: opHash(op),
        renders: targetsRendering(op.kind),
        description: CATALOG_DESCRIPTIONS[name] ?? '',
        op,
      }));
      if (flags.json) return printJson(rows);
      process.stdout.write(`${table([['op', 'kind', 'rendered for', 'description'], ...rows.map((r) => [r.name, r.kind, r.renders.join(',') || '(plans only)', r.description])])}\n`);
    });
  program
    .command('devices')
    .description('list device profiles and mark those present on this machine')
    .option('--json', 'machine-readable output')
    .addHelpText('after', `\n${OWN_PROFILE}\n\nExamples:\n  kgen devices\n  kgen devices --json`)
    .action((flags: { json?: boolean }) => {
      const gpus = detectGpus();
      const devices = allDevices(cliHost());
      const rows = devices.map((d) => ({ device: d, presence: detectPresence(d, gpus) }));
      // A GPU no profile describes can still verify kernels (through PTX), but not be tuned as a profile.
      const unprofiled = gpus.gpus.filter((g) => !devices.some((d) => matchGpuProfile(d, g).matches));
      if (flags.json) return printJson(rows.map((r) => ({ ...r.device, present: r.presence.present, presence: r.presence.how })));
      const lines = [['', 'device', 'kind', 'targets', 'GB/s', 'on-chip', 'description'], ...rows.map(({ device: d, presence }) => [
        presence.present ? '*' : ' ',
        d.name,
        d.kind,
        d.targets.join(','),
        String(d.memory.bandwidthGBs),
        d.gpu ? `${d.gpu.sharedPerBlockOptinBytes / 1024} KiB shared/block` : `${(d.cpu!.l2Bytes / 1024).toFixed(0)} KiB L2/core`,
        d.description,
      ])];
      process.stdout.write(`${table(lines)}\n(* = present here)\n${OWN_PROFILE}\n`);
      if (unprofiled.length) process.stdout.write(`GPUs here without a profile: ${unprofiled.map(describeGpu).join('; ')}\n`);
    });
}
