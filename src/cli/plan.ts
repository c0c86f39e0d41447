import type { Command } from 'commander';
import { choosePlan } from '../api/emit.js';
import { resolveRequest } from '../api/request.js';
import { configInUse, spaceFor } from '../plan/index.js';
import type { KernelFlags } from './common.js';
import { addDbFlag, addKernelFlags, printJson, table, toRequest, withRecords } from './common.js';
import { describeChoice } from '../db/lookup.js';

export function registerPlan(program: Command): void {
  const cmd = program
    .command('plan')
    .description('show the plan for an op on a device: config, loops, on-chip buffers and budgets (no code)')
    .option('--no-records', 'ignore the tuning database: plan --config or the default config');
  addDbFlag(cmd);
  addKernelFlags(cmd).addHelpText(
    'after',
    `
Examples:
  kgen plan --target cuda --device rtx4090 --op matmul_q35 --shape M=1,N=4096,K=4096
  kgen plan --target wgsl --device webgpu --op attention_f16 --shape B=1,Hq=32,Hkv=8,Sq=512,Skv=512,D=128
  kgen plan --target c --op matmul_q4 --shape M=256,N=4096,K=4096 --config '{"nTile":128}'
  kgen plan --target wgsl --device ./phone.json --op matmul_q4_0 --shape M=1,N=4096,K=4096   your own profile

Without --config it plans the config emit would use: the tuning database's record for this device,
op and shape (or the nearest shape; with --isa, that ISA's fastest) where there is one, else the
default.`,
  );
  cmd.action(async (flags: KernelFlags & { db?: string; records: boolean }) => {
    const req = resolveRequest(toRequest(flags));
    const { plan, source, recorded, notes } = await withRecords(flags, (records) => choosePlan(req, records));
    for (const note of [...(recorded ? [describeChoice(recorded)] : []), ...notes]) process.stderr.write(`kgen: ${note}\n`);
    const space = spaceFor(req);
    // The profile's figures are `kgen devices --json`'s to show; the plan names its device.
    const { profile: _profile, ...shown } = plan;
    if (flags.json) return printJson({ ...shown, configSource: source, knobs: space.knobs, restrictions: space.restrictions.map((r) => r.reason) });
    const out = [
      `${plan.op.name} on ${plan.device} (${plan.target}), variant ${plan.variant}, config (${source}) ${JSON.stringify(configInUse(plan))}`,
      `launch: ${JSON.stringify(plan.launch)}`,
      'loops:',
      ...plan.loops.map((l) => `  ${l}`),
      'on-chip buffers:',
      table([['  name', 'space', 'size', 'why'], ...plan.buffers.map((b) => [`  ${b.name}`, b.space, String(b.size), b.why])]),
      'budgets:',
      table([['  budget', 'needed', 'available', 'unit'], ...plan.budgets.map((b) => [`  ${b.budget}`, String(b.needed), String(b.available), b.unit])]),
      'knobs:',
      // A knob this config does not use changes nothing here (its first value stands in).
      ...space.knobs.map((k) => `  ${k.name}: ${k.values.join(' | ')}  (${k.doc})${plan.knobsInUse.includes(k.name) ? '' : '; not in use for this config'}`),
      `tolerance: NMSE <= ${plan.tolerance.nmse}, |error| <= ${plan.tolerance.maxRelToPeak} x peak`,
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  });
}
