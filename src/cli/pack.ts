import { constants } from 'node:buffer';
import { readFileSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { pack, packLayout } from '../api/pack.js';
import { KgenError } from '../errors.js';
import { catalogOp } from '../ir/catalog.js';
import { opKit } from '../ops/index.js';
import { pathText, quoted } from '../io/message-text.js';
import { fsError, writeOutputFile } from '../io/output.js';
import { parseDimPairs } from '../ir/validate.js';
import { FORMATS } from '../quant/index.js';
import { printJson } from './common.js';
import { optionalCount, optionalPath } from './flags.js';

const MAX_LENGTH = constants.MAX_LENGTH;

interface PackFlags {
  format?: string;
  op?: string;
  group?: string;
  shape?: string;
  in?: string;
  out?: string;
  force?: boolean;
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
    .option('--force', 'replace the output file if it exists')
    .option('--json', 'print a summary as JSON')
    .addHelpText('after', `
Examples:
  kgen pack --format q4_0 --shape N=4096,K=4096 --in w.f32 -o w.q4_0
  kgen pack --op matmul_q35 --shape N=4096,K=14336 --in ffn_down.f32 -o ffn_down.q35`)
    .action((flags: PackFlags) => {
      let format = flags.format;
      let groupSize = optionalCount(flags.group, '--group', { min: 32, max: 4096 });
      if (flags.op !== undefined) {
        const op = catalogOp(flags.op);
        const weights = op && opKit(op.kind).weights(op);
        if (!weights) throw new KgenError({ field: '--op', problem: `${quoted(flags.op)} is not a catalog op with weights`, expected: 'a matmul op from `kgen ops`' });
        if (format !== undefined && format !== weights.format) throw new KgenError({ field: '--format', problem: `contradicts --op ${flags.op} (${weights.format})`, expected: 'one of them' });
        format = weights.format;
        groupSize ??= weights.groupSize;
      }
      if (format === undefined) throw new KgenError({ field: '--format', problem: 'missing', expected: '--format NAME or --op NAME' });
      const input = optionalPath(flags.in, '--in', 'a raw f32 file');
      if (input === undefined) throw new KgenError({ field: '--in', problem: 'missing', expected: 'a raw f32 file' });
      const out = optionalPath(flags.out, '--out', 'an output file path');
      if (out === undefined) throw new KgenError({ field: '--out', problem: 'missing', expected: 'an output file path' });
      const { N, K } = parseNK(flags.shape);
      packLayout({ format, groupSize, N, K }); // format, group and shape checked before the input is read
      const raw = readWeights(input, N * K * 4);
      const weights = new Float32Array(raw.buffer, raw.byteOffset, raw.length / 4);
      const result = pack({ format, groupSize, N, K, weights });
      writeOutputFile(out, result.bytes, { field: '--out', force: flags.force });
      const summary = { out, format, formatVersion: FORMATS[result.spec.format].version, groupSize: result.spec.groupSize, N, K, bytes: result.bytes.length, rowBytes: result.rowBytes, bitsPerWeight: result.bitsPerWeight };
      if (flags.json) printJson(summary);
      else process.stderr.write(`kgen: packed ${N}x${K} into ${result.bytes.length} bytes of ${format} layout ${FORMATS[result.spec.format].version} (${result.bitsPerWeight} bits/weight) at ${pathText(out)}\n`);
    });
}

/**
 * The raw f32 input: a regular file of exactly `expected` bytes, checked before it is read (a
 * FIFO or device would block, a huge file would be read for nothing).
 */
function readWeights(path: string, expected: number): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw fsError('--in', 'read', path, e, 'check the path');
  }
  if (!st.isFile()) throw new KgenError({ field: '--in', problem: `${pathText(path)} is not a regular file`, expected: 'a raw f32 file' });
  if (st.size % 4 !== 0) throw new KgenError({ field: '--in', problem: `${st.size} bytes is not a whole number of f32 values`, expected: `${expected} bytes` });
  if (st.size !== expected) throw new KgenError({ field: '--in', problem: `holds ${st.size / 4} values but N*K = ${expected / 4}`, expected: `${expected} bytes (N*K f32 values, row-major)`, hint: 'check --shape' });
  if (expected > MAX_LENGTH) throw new KgenError({ field: '--shape', problem: `N*K*4 = ${expected} bytes is more than one call can hold (${MAX_LENGTH})`, expected: 'a smaller matrix', hint: 'pack the matrix in row ranges' });
  try {
    return readFileSync(path);
  } catch (e) {
    throw fsError('--in', 'read', path, e, 'check the path');
  }
}
