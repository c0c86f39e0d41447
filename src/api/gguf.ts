import { KgenError } from '../errors.js';
import type { WeightFormatName } from '../ir/types.js';
import { readGgufIndex, readGgufTensor, type GgufIndex, type GgufTensor } from '../io/gguf-file.js';
import { quoted, shellArg } from '../io/message-text.js';
import { f16BitsToF32 } from '../numeric/half.js';
import { FORMATS } from '../quant/index.js';
import { pack, packLayout, type PackResult } from './pack.js';

/** GGUF types whose blocks are kgen formats byte for byte: passed through, never requantized. */
const PASSTHROUGH: Partial<Record<string, WeightFormatName>> = { Q4_0: 'q4_0', Q8_0: 'q8_0' };
/** GGUF float types kgen quantizes into any of its formats. */
const FLOAT_TYPES = ['F32', 'F16', 'BF16'];

/** How kgen can take one GGUF tensor. */
export interface GgufTensorView extends GgufTensor {
  /** A weight matrix W[N,K] (2-D tensors only): N = dims[1] rows of K = dims[0] columns. */
  matrix?: { N: number; K: number };
  /** `passthrough`: its bytes are a kgen format's; `quantize`: floats kgen packs into any format. */
  use?: { kind: 'passthrough'; format: WeightFormatName } | { kind: 'quantize' };
  /** Why kgen cannot take it, when it cannot. */
  unusable?: string;
}

/** A GGUF file as `kgen gguf` shows it: its tensors and one emit command per distinct matmul shape. */
export interface GgufListing extends Omit<GgufIndex, 'tensors'> {
  tensors: GgufTensorView[];
  /** Distinct (op, N, K) of the usable weight matrices, with the tensors of each. */
  matmuls: { op: string; N: number; K: number; tensors: string[]; emit: string; pack: string }[];
}

/**
 * The weight formats a float tensor's suggestion packs into, in order: the first whose block divides
 * its K (q3.5's 64, else ggml q4_0's 32). Not f16: its block is 2 weights, but its kernels take K in
 * multiples of 32 (docs/ir.md), which q4_0 already covers, so it would only ever be suggested with
 * an emit command that refuses the shape.
 */
const SUGGESTED_FORMATS: readonly WeightFormatName[] = ['q35', 'q4_0'];

function suggestedFormat(K: number): WeightFormatName | undefined {
  return SUGGESTED_FORMATS.find((f) => K % FORMATS[f].codec(undefined).weightsPerBlock === 0);
}

export async function listGguf(path: string, field = 'FILE'): Promise<GgufListing> {
  const index = await readGgufIndex(path, field);
  const tensors = index.tensors.map(view);
  const byShape = new Map<string, GgufListing['matmuls'][number]>();
  for (const t of tensors) {
    if (!t.matrix || !t.use) continue;
    const { N, K } = t.matrix;
    // view() leaves `use` off a tensor no format takes, so a suggestion always exists here.
    const format = t.use.kind === 'passthrough' ? t.use.format : suggestedFormat(K)!;
    if (K % FORMATS[format].codec(undefined).weightsPerBlock !== 0) continue;
    const key = `${format}:${N}:${K}`;
    let m = byShape.get(key);
    if (!m) {
      const formatFlag = t.use.kind === 'quantize' ? ` --format ${format}` : '';
      m = {
        op: `matmul_${format}`,
        N,
        K,
        tensors: [],
        emit: `kgen emit --target c --op matmul_${format} --shape M=1,N=${N},K=${K} -o matmul_${format}_${N}x${K}/`,
        pack: `kgen pack --from-gguf ${shellArg(path)} --tensor ${shellArg(t.name)}${formatFlag} -o ${shellArg(`${t.name}.${format}`)}`,
      };
      byShape.set(key, m);
    }
    m.tensors.push(t.name);
  }
  return { ...index, tensors, matmuls: [...byShape.values()] };
}

function view(t: GgufTensor): GgufTensorView {
  const v: GgufTensorView = { ...t };
  if (t.dims.length !== 2) {
    v.unusable = t.dims.length === 1 ? '1-D (a norm or bias, not a weight matrix)' : `${t.dims.length}-D (kgen packs 2-D weight matrices)`;
    return v;
  }
  v.matrix = { N: t.dims[1]!, K: t.dims[0]! };
  const format = PASSTHROUGH[t.type];
  if (v.matrix.N === 0 || v.matrix.K === 0) v.unusable = `empty (N=${v.matrix.N}, K=${v.matrix.K})`;
  else if (format) v.use = { kind: 'passthrough', format };
  else if (FLOAT_TYPES.includes(t.type) && suggestedFormat(v.matrix.K) === undefined) v.unusable = `K=${v.matrix.K} is not a multiple of 32: no kernel takes it (pad each row with zeros to ${Math.ceil(v.matrix.K / 32) * 32})`;
  else if (FLOAT_TYPES.includes(t.type)) v.use = { kind: 'quantize' };
  else v.unusable = `type ${t.type} (kgen reads ${Object.keys(PASSTHROUGH).join(', ')} as they are and quantizes ${FLOAT_TYPES.join(', ')})`;
  return v;
}

export interface PackFromGgufOptions {
  path: string;
  tensor: string;
  /** The kgen format: required for float tensors; for q4_0/q8_0 tensors only their own. */
  format?: string;
  groupSize?: number;
}

/** What `packFromGguf` made, and how. */
export interface GgufPackResult extends PackResult {
  N: number;
  K: number;
  /** The tensor's GGUF type, and whether its bytes were passed through or quantized. */
  source: { type: string; how: 'passthrough' | 'quantized' };
}

/**
 * One tensor of a GGUF file in a kgen format: q4_0 and q8_0 tensors byte for byte (after checking
 * that every block's scale is a finite f16), F32, F16 and BF16 tensors quantized into `format`.
 */
export async function packFromGguf(opts: PackFromGgufOptions): Promise<GgufPackResult> {
  const listing = await listGguf(opts.path, '--from-gguf');
  const t = listing.tensors.find((x) => x.name === opts.tensor);
  if (!t) {
    const names = listing.tensors.filter((x) => x.use && x.matrix).map((x) => x.name);
    throw new KgenError({ field: '--tensor', problem: `${quoted(opts.tensor)} is not a tensor of the file`, expected: `one of ${names.slice(0, 6).join(', ')}${names.length > 6 ? `, ... (${names.length} in all)` : ''}`, hint: '`kgen gguf FILE` lists them' });
  }
  if (!t.use || !t.matrix) throw new KgenError({ field: '--tensor', problem: `${quoted(t.name)} is ${t.unusable}`, expected: 'a 2-D weight matrix', hint: '`kgen gguf FILE` lists the ones kgen can pack' });
  const { N, K } = t.matrix;
  const bytes = readGgufTensor(opts.path, t, '--from-gguf');
  if (t.use.kind === 'passthrough') {
    const format = t.use.format;
    if (opts.format !== undefined && opts.format !== format) {
      throw new KgenError({ field: '--format', problem: `${quoted(t.name)} is a ${t.type} tensor; kgen passes its blocks through as ${format} and does not quantize them again (that would add a second rounding)`, expected: `--format ${format}, or none`, hint: 'take a float tensor of the model to pack into other formats' });
    }
    if (opts.groupSize !== undefined && opts.groupSize !== 32) throw new KgenError({ field: '--group', problem: `${format} blocks are 32 weights`, expected: '32, or none' });
    const layout = packLayout({ format, N, K });
    checkScales(bytes, layout.codec.bytesPerBlock, K / layout.codec.weightsPerBlock, t.name);
    return { bytes, spec: layout.spec, bitsPerWeight: layout.bitsPerWeight, rowBytes: layout.rowBytes, N, K, source: { type: t.type, how: 'passthrough' } };
  }
  if (opts.format === undefined) throw new KgenError({ field: '--format', problem: `missing: ${quoted(t.name)} is a ${t.type} tensor, which kgen quantizes into the format you choose`, expected: `one of ${Object.keys(FORMATS).join(', ')}` });
  packLayout({ format: opts.format, groupSize: opts.groupSize, N, K }); // format, group and K checked before converting
  const result = pack({ format: opts.format, groupSize: opts.groupSize, N, K, weights: floats(bytes, t.type) });
  return { ...result, N, K, source: { type: t.type, how: 'quantized' } };
}

/** The f32 values of a float tensor's little-endian bytes. */
function floats(bytes: Uint8Array, type: string): Float32Array {
  if (type === 'F32') return new Float32Array(bytes.slice().buffer);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 2);
  if (type === 'BF16') {
    // bf16 is the top half of an f32.
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < out.length; i++) bits[i] = view.getUint16(2 * i, true) << 16;
  } else {
    for (let i = 0; i < out.length; i++) out[i] = f16BitsToF32(view.getUint16(2 * i, true));
  }
  return out;
}

/** Refuses a ggml block whose f16 scale (its first two bytes) is Inf or NaN: kernels would spread it. */
function checkScales(bytes: Uint8Array, blockBytes: number, blocksPerRow: number, name: string): void {
  for (let b = 0; b * blockBytes < bytes.length; b++) {
    const h = bytes[b * blockBytes]! | (bytes[b * blockBytes + 1]! << 8);
    if ((h & 0x7c00) === 0x7c00) {
      throw new KgenError({ field: '--tensor', problem: `${quoted(name)} row ${Math.floor(b / blocksPerRow)}, block ${b % blocksPerRow} has a scale of ${Number.isNaN(f16BitsToF32(h)) ? 'NaN' : 'Inf'}`, expected: 'finite block scales', hint: 'the file is damaged, or was written by a broken quantizer' });
    }
  }
}
