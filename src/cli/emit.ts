import type { Command } from 'commander';
import { emit } from '../api/emit.js';
import type { KernelFlags } from './common.js';
import { addDbFlag, addKernelFlags, openDb, printJson, toRequest, writeDirAtomically } from './common.js';

export function registerEmit(program: Command): void {
  const cmd = program
    .command('emit')
    .description('generate a kernel: kernel source, header and manifest.json')
    .option('-o, --out <dir>', 'write kernel.c, kernel.h and manifest.json here (default: kernel.c to stdout)')
    .option('--no-records', 'ignore the tuning database: use --config or the default config');
  addDbFlag(cmd);
  addKernelFlags(cmd).addHelpText(
    'after',
    `
Examples:
  kgen emit --target c --op matmul_q35 --shape M=1,N=4096,K=4096 -o out/
  kgen emit --target c --op matmul_q4_0 --shape M=1,N=4096,K=14336 --isa avx2 --device host -o q4_0/
  kgen emit --target c --op matmul_q4 --shape M=16,N=4096,K=4096 --config '{"nTile":16,"mTile":4}'
  kgen emit --target c --ir my_op.json --shape M=1,N=1024,K=4096 --json

Without --config, emit takes the best config \`kgen tune\` recorded for this device, op and shape,
else the nearest recorded shape of the op (said on stderr), else the default; the manifest's
configSource and record fields say which.`,
  );
  cmd.action((flags: KernelFlags & { out?: string; db?: string; records: boolean }) => {
    const argv = process.argv.slice(2).map((a) => (/[\s'"{}]/.test(a) ? `'${a.replace(/'/g, "'\\''")}'` : a));
    const records = flags.records && !flags.config ? openDb(flags, { ifExists: true }) : undefined;
    let result;
    try {
      result = emit({ ...toRequest(flags), command: `kgen ${argv.join(' ')}`, records });
    } finally {
      records?.close();
    }
    for (const note of result.notes) process.stderr.write(`kgen: ${note}\n`);
    if (flags.out) {
      writeDirAtomically(flags.out, result.files);
      if (flags.json) printJson({ out: flags.out, files: Object.keys(result.files), manifest: result.manifest });
      else process.stderr.write(`kgen: wrote ${Object.keys(result.files).join(', ')} to ${flags.out} (${result.plan.variant}, config ${JSON.stringify(result.plan.config)})\n`);
    } else if (flags.json) {
      printJson({ files: result.files, manifest: result.manifest });
    } else {
      process.stdout.write(result.files['kernel.c']!);
    }
  });
}
