import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { pack } from '../api/pack.js';
import { KgenError } from '../errors.js';
import { CATALOG } from '../ir/catalog.js';
import { parseDimPairs } from '../ir/validate.js';
import { printJson, writeFileAtomically } from './common.js';

interface PackFlags {
  format?: string;
  op?: string;
  group?: string;
  shape?: string;
  in?: string;
  out?: string;
  json?: boolean;
}

/** N and K of the weight matrix; an M (as in the shape given to emit) is accepted and ignored. */
function parseNK(text: string | undefined): { N: number; K: number } {
  const field = '--shape';
  if (!text) throw new KgenError({ field, problem: 'missing', expected: 'N=ROWS,K=COLUMNS, e.g. N=4096,K=4096' });
  const dims = parseDimPairs(text, { dims: ['M', 'N', 'K'], of: 'a weight matrix W[N,K] (M is ignored)', example: 'N=4096,K=4096', field });
  for (const d of ['N', 'K'] as const) {
    if (dims[d] === undefined) throw new KgenError({ field, problem: `dimension ${d} is missing`, expected: 'N=ROWS,K=COLUMNS, e.g. N=4096,K=4096' });
  }
  return { N: dims.N!, K: dims.K! };
}

export function registerPack(program: Command): void {
  program
    .command('pack')
    .description('quantize a raw f32 weight file (row-major W[N,K], little-endian) into a format\'s bytes')
    .option('--format <name>', 'q35 | q4 | q8 | q4_0 | q8_0 | f16')
    .option('--op <name>', 'take the format and group size from a catalog op instead')
    .option('--group <n>', 'group size for q35, q4, q8 (default 64)')
    .option('--shape <dims>', 'N=ROWS,K=COLUMNS (an M, as given to emit, is ignored)')
    .option('--in <file>', 'raw f32 input')
    .option('-o, --out <file>', 'packed output')
    .option('--json', 'print a summary as JSON')
    .addHelpText('after', `
Examples:
  kgen pack --format q4_0 --shape N=4096,K=4096 --in w.f32 -o w.q4_0
  kgen pack --op matmul_q35 --shape N=4096,K=14336 --in ffn_down.f32 -o ffn_down.q35`)
    .action((flags: PackFlags) => {
      let format = flags.format;
      let groupSize = flags.group !== undefined ? Number(flags.group) : undefined;
      if (flags.op) {
        const op = CATALOG[flags.op];
        if (!op || op.kind !== 'matmul') throw new KgenError({ field: '--op', problem: `"${flags.op}" is not a catalog matmul`, expected: 'a matmul op from `kgen ops`' });
        if (format && format !== op.weight.format) throw new KgenError({ field: '--format', problem: `contradicts --op ${flags.op} (${op.weight.format})`, expected: 'one of them' });
        format = op.weight.format;
        groupSize ??= op.weight.groupSize;
      }
      if (!format) throw new KgenError({ field: '--format', problem: 'missing', expected: '--format NAME or --op NAME' });
      if (!flags.in) throw new KgenError({ field: '--in', problem: 'missing', expected: 'a raw f32 file' });
      if (!flags.out) throw new KgenError({ field: '--out', problem: 'missing', expected: 'an output file path' });
      const { N, K } = parseNK(flags.shape);
      let raw: Buffer;
      try {
        raw = readFileSync(flags.in);
      } catch (e) {
        throw new KgenError({ field: '--in', problem: `cannot read ${flags.in} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, expected: 'a readable file' });
      }
      if (raw.length % 4 !== 0) throw new KgenError({ field: '--in', problem: `${raw.length} bytes is not a whole number of f32 values`, expected: `${N * K * 4} bytes` });
      const weights = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
      const result = pack({ format, groupSize, N, K, weights });
      writeFileAtomically(flags.out, result.bytes);
      const summary = { out: flags.out, format, groupSize: result.spec.groupSize, N, K, bytes: result.bytes.length, rowBytes: result.rowBytes, bitsPerWeight: result.bitsPerWeight };
      if (flags.json) printJson(summary);
      else process.stderr.write(`kgen: packed ${N}x${K} into ${result.bytes.length} bytes of ${format} (${result.bitsPerWeight} bits/weight) at ${flags.out}\n`);
    });
}
