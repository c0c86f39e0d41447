import type { Command } from 'commander';
import { listGguf } from '../api/gguf.js';
import { KgenError } from '../errors.js';
import { printJson, table } from './common.js';
import { optionalPath, parseCount } from './flags.js';
import { MAX_DIM } from '../ir/validate.js';

export function registerGguf(program: Command): void {
  program
    .command('gguf')
    .description('list a GGUF file\'s tensors (name, type, shape, what kgen can do with each) and the emit and pack commands for each distinct matmul shape')
    .argument('<file>', 'a GGUF file')
    .option('--json', 'machine-readable output')
    .option('--kernels [M]', 'print instead the list of distinct matmuls as `kgen emit --kernels` reads it, at M rows of activations (default 1)')
    .addHelpText('after', `
q4_0 and q8_0 tensors pass through to kgen's q4_0 and q8_0 byte for byte; F32, F16 and BF16
tensors are quantized into the format you give \`kgen pack --format\` (the commands shown use q35).

Examples:
  kgen gguf model.gguf
  kgen gguf model.gguf --json
  kgen gguf model.gguf --kernels > layer.json && kgen emit --target c --kernels layer.json --package model-kernels/`)
    .action(async (file: string, flags: { json?: boolean; kernels?: string | boolean }) => {
      const path = optionalPath(file, 'FILE', 'a GGUF file');
      if (path === undefined) throw new KgenError({ field: 'FILE', problem: 'missing', expected: 'a GGUF file' });
      const M = typeof flags.kernels === 'string' ? parseCount(flags.kernels, '--kernels', { min: 1, max: MAX_DIM }) : 1;
      const listing = await listGguf(path);
      if (flags.kernels !== undefined) return printJson(listing.matmuls.map((m) => ({ op: m.op, shape: `M=${M},N=${m.N},K=${m.K}` })));
      if (flags.json) return printJson(listing);
      const head = [listing.modelName, listing.architecture && `architecture ${listing.architecture}`, `GGUF v${listing.version}`, `${listing.tensors.length} tensors`].filter(Boolean).join(', ');
      const rows = listing.tensors.map((t) => [
        t.name,
        t.type,
        t.matrix ? `N=${t.matrix.N},K=${t.matrix.K}` : t.dims.join('x'),
        t.use ? (t.use.kind === 'passthrough' ? `${t.use.format} as is` : 'quantize (--format)') : `no: ${t.unusable}`,
      ]);
      process.stdout.write(`${head}\n${table([['tensor', 'type', 'shape', 'kgen'], ...rows])}\n`);
      if (!listing.matmuls.length) return void process.stdout.write('no weight matrix kgen can take\n');
      process.stdout.write(`\n${listing.matmuls.length} distinct matmul shape(s):\n`);
      for (const m of listing.matmuls) {
        process.stdout.write(`  ${m.op} N=${m.N},K=${m.K}: ${m.tensors.length} tensor(s), e.g. ${m.tensors[0]}\n    ${m.emit}\n    ${m.pack}\n`);
      }
    });
}
