import { constants } from 'node:buffer';
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { packFromGguf } from '../api/gguf.js';
import { pack, packLayout, type PackResult } from '../api/pack.js';
import { checkPacked, packedSidecar, sidecarPath } from '../api/packed-file.js';
import { KgenError } from '../errors.js';
import { catalogOp } from '../ir/catalog.js';
import { opKit } from '../ops/index.js';
import { pathText, quoted } from '../io/message-text.js';
import { parseJsonInput } from '../io/json-input.js';
import { readRegularFile } from '../io/input-file.js';
import { writeOutputFile, writeOutputFiles, type OutputOptions } from '../io/output.js';
import { parseDimPairs } from '../ir/validate.js';
import { codecOf, dequantizeMatrix, FORMATS } from '../quant/index.js';
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
  fromGguf?: string;
  tensor?: string;
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
    .description('quantize a raw f32 weight file (row-major W[N,K], little-endian) into a format\'s bytes, with a sidecar OUT.json saying what they are')
    .option('--format <name>', 'q35 | q4 | q8 | q4_0 | q8_0 | f16')
    .option('--op <name>', 'take the format and group size from a catalog op instead')
    .option('--group <n>', 'group size for q35, q4, q8 (default 64)')
    .option('--shape <dims>', 'N=ROWS,K=COLUMNS (an M, as given to emit, is ignored)')
    .option('--in <file>', 'raw f32 input')
    .option('--from-gguf <file>', 'take the weights from a tensor of a GGUF file instead (with --tensor; no --in or --shape)')
    .option('--tensor <name>', 'the GGUF tensor: q4_0 and q8_0 pass through byte for byte, F32/F16/BF16 are quantized into --format')
    .option('-o, --out <file>', 'packed output')
    .option('--force', 'replace the output file (and its sidecar) if it exists')
    .option('--json', 'print a summary as JSON')
    .addHelpText('after', `
Beside OUT, pack writes OUT.json: format, layout version, group size, N, K and the bytes' sha256.
Kernels read only OUT; \`kgen unpack\` (and loaders) use the sidecar to refuse bytes of another
layout version instead of misreading them.

Examples:
  kgen pack --format q4_0 --shape N=4096,K=4096 --in w.f32 -o w.q4_0
  kgen pack --from-gguf model.gguf --tensor blk.0.ffn_down.weight -o ffn_down.q4_0
  kgen pack --from-gguf model-f16.gguf --tensor blk.0.attn_q.weight --format q35 -o attn_q.q35
  kgen pack --op matmul_q35 --shape N=4096,K=14336 --in ffn_down.f32 -o ffn_down.q35`)
    .action(async (flags: PackFlags) => {
      if (flags.fromGguf !== undefined || flags.tensor !== undefined) return packGguf(flags);
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
      writePacked(out, { ...result, N, K }, flags, [{ path: input, field: '--in' }]);
    });

  program
    .command('unpack')
    .description('the f32 values packed weights decode to (what every kernel multiplies with), checked against the sidecar `kgen pack` wrote')
    .option('--in <file>', 'packed weights (with FILE.json beside them)')
    .option('-o, --out <file>', 'raw f32 output, row-major W[N,K], little-endian')
    .option('--format <name>', 'raw bytes without a sidecar: their format (only formats still at layout 1)')
    .option('--group <n>', 'raw bytes without a sidecar: the group size')
    .option('--shape <dims>', 'raw bytes without a sidecar: N=ROWS,K=COLUMNS')
    .option('--force', 'replace the output file if it exists')
    .option('--json', 'print a summary as JSON')
    .addHelpText('after', `
Bytes whose sidecar names another layout version than this kgen's are refused, as are q35 bytes
without a sidecar (q35 layout 1 and 2 cannot be told apart by their bytes): pack them again.

Examples:
  kgen unpack --in w.q4_0 -o w.dequant.f32
  kgen unpack --in raw.q8_0 --format q8_0 --shape N=4096,K=4096 -o w.f32`)
    .action((flags: PackFlags) => {
      const input = optionalPath(flags.in, '--in', 'a packed weight file');
      if (input === undefined) throw new KgenError({ field: '--in', problem: 'missing', expected: 'a packed weight file' });
      const out = optionalPath(flags.out, '--out', 'an output file path');
      if (out === undefined) throw new KgenError({ field: '--out', problem: 'missing', expected: 'an output file path' });
      const described = flags.format !== undefined || flags.shape !== undefined || flags.group !== undefined;
      const sidecarFile = sidecarPath(input);
      const hasSidecar = existsSync(sidecarFile);
      if (hasSidecar && described) throw new KgenError({ field: '--format', problem: `${pathText(input)} has a sidecar, which says what the bytes are`, expected: '--format, --group and --shape only for raw bytes without one', hint: 'drop those flags' });
      const raw = described && !hasSidecar ? rawDescription(flags) : undefined;
      const bytes = readWholeFile(input, '--in', 'a packed weight file');
      const sidecar = hasSidecar ? parseJsonInput(readWholeFile(sidecarFile, '--in sidecar', 'a JSON file').toString('utf8'), { field: '--in sidecar', expected: 'the JSON `kgen pack` wrote', source: pathText(sidecarFile) }) : undefined;
      const packed = checkPacked({ bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length), sidecar, raw, field: '--in', shown: pathText(input) });
      if (packed.N * packed.K * 4 > MAX_LENGTH) throw new KgenError({ field: '--in', problem: `N*K*4 = ${packed.N * packed.K * 4} bytes of f32 is more than one call can hold`, expected: 'a smaller matrix' });
      const values = dequantizeMatrix(codecOf(packed.spec), packed.bytes, packed.N, packed.K);
      const inputs = [{ path: input, field: '--in' }, ...(hasSidecar ? [{ path: sidecarFile, field: '--in sidecar' }] : [])];
      writeOutputFile(out, new Uint8Array(values.buffer), { field: '--out', force: flags.force, inputs });
      const summary = { out, format: packed.spec.format, formatVersion: FORMATS[packed.spec.format].version, groupSize: packed.spec.groupSize, N: packed.N, K: packed.K, describedBy: packed.describedBy };
      if (flags.json) printJson(summary);
      else process.stderr.write(`kgen: unpacked ${packed.N}x${packed.K} ${packed.spec.format} (layout ${summary.formatVersion}) into ${values.length * 4} bytes of f32 at ${pathText(out)}\n`);
    });
}

/** `pack --from-gguf FILE --tensor NAME`: the tensor's blocks as they are, or its floats quantized. */
async function packGguf(flags: PackFlags): Promise<void> {
  for (const [flag, v] of [['--in', flags.in], ['--shape', flags.shape], ['--op', flags.op]] as const) {
    if (v !== undefined) throw new KgenError({ field: flag, problem: 'given with --from-gguf', expected: 'one source of weights', hint: `the GGUF tensor gives the ${flag === '--op' ? 'format (or --format does)' : 'weights and their shape'}: drop ${flag}` });
  }
  const file = optionalPath(flags.fromGguf, '--from-gguf', 'a GGUF file');
  if (file === undefined) throw new KgenError({ field: '--from-gguf', problem: 'missing', expected: 'a GGUF file, with --tensor' });
  if (flags.tensor === undefined) throw new KgenError({ field: '--tensor', problem: 'missing', expected: 'the name of a tensor of the GGUF file', hint: '`kgen gguf FILE` lists them' });
  const out = optionalPath(flags.out, '--out', 'an output file path');
  if (out === undefined) throw new KgenError({ field: '--out', problem: 'missing', expected: 'an output file path' });
  const groupSize = optionalCount(flags.group, '--group', { min: 32, max: 4096 });
  const result = await packFromGguf({ path: file, tensor: flags.tensor, format: flags.format, groupSize });
  writePacked(out, result, flags, [{ path: file, field: '--from-gguf' }], ` from ${result.source.type} tensor ${quoted(flags.tensor)} (${result.source.how === 'passthrough' ? 'blocks passed through byte for byte' : 'quantized'})`);
}

/** Writes packed bytes and their sidecar together (never over `inputs`, the files read), then says what was written. */
function writePacked(out: string, result: PackResult & { N: number; K: number }, flags: PackFlags, inputs: OutputOptions['inputs'], from = ''): void {
  const sidecar = packedSidecar(result);
  writeOutputFiles([{ path: out, content: result.bytes }, { path: sidecarPath(out), content: `${JSON.stringify(sidecar, null, 2)}\n` }], { field: '--out', force: flags.force, inputs });
  const { N, K } = result;
  const summary = { out, sidecar: sidecarPath(out), format: sidecar.format, formatVersion: sidecar.formatVersion, groupSize: result.spec.groupSize, N, K, bytes: result.bytes.length, rowBytes: result.rowBytes, bitsPerWeight: result.bitsPerWeight, sha256: sidecar.sha256 };
  if (flags.json) printJson(summary);
  else process.stderr.write(`kgen: packed ${N}x${K}${from} into ${result.bytes.length} bytes of ${sidecar.format} layout ${sidecar.formatVersion} (${Number(result.bitsPerWeight.toPrecision(4))} bits/weight) at ${pathText(out)}, described by ${pathText(sidecarPath(out))}\n`);
}

/** `unpack`'s description of raw bytes without a sidecar: all of --format and --shape, --group optional. */
function rawDescription(flags: PackFlags): { format: string; groupSize?: number; N: number; K: number } {
  if (flags.format === undefined) throw new KgenError({ field: '--format', problem: 'missing', expected: 'the format of the raw bytes (with --shape)' });
  const groupSize = optionalCount(flags.group, '--group', { min: 32, max: 4096 });
  return { format: flags.format, ...(groupSize !== undefined ? { groupSize } : {}), ...parseNK(flags.shape) };
}

/**
 * The raw f32 input: a regular file of exactly `expected` bytes, checked before it is read (a
 * FIFO or device would block, a huge file would be read for nothing).
 */
function readWeights(path: string, expected: number): Buffer {
  return readRegularFile(path, '--in', 'a raw f32 file', (st) => {
    if (st.size % 4 !== 0) throw new KgenError({ field: '--in', problem: `${st.size} bytes is not a whole number of f32 values`, expected: `${expected} bytes` });
    if (st.size !== expected) throw new KgenError({ field: '--in', problem: `holds ${st.size / 4} values but N*K = ${expected / 4}`, expected: `${expected} bytes (N*K f32 values, row-major)`, hint: 'check --shape' });
    if (expected > MAX_LENGTH) throw new KgenError({ field: '--shape', problem: `N*K*4 = ${expected} bytes is more than one call can hold (${MAX_LENGTH})`, expected: 'a smaller matrix', hint: 'pack the matrix in row ranges' });
  });
}

/** A file `unpack` reads whole (packed weights, their sidecar), refused before reading when too big. */
function readWholeFile(path: string, field: string, what: string): Buffer {
  return readRegularFile(path, field, what, (st) => {
    if (st.size > MAX_LENGTH) throw new KgenError({ field, problem: `${pathText(path)} is ${st.size} bytes, more than one call can hold (${MAX_LENGTH})`, expected: 'a smaller file' });
  });
}
