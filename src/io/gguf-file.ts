import { closeSync, openSync, readSync } from 'node:fs';
import { gguf, GGMLQuantizationType } from '@huggingface/gguf';
import { InternalError, KgenError } from '../errors.js';
import { oneLine, pathText, quoted } from './message-text.js';
import { statRegularFile } from './input-file.js';
import { fsError } from './output.js';

/**
 * GGUF tensor types whose bytes kgen knows how to size (and read): plain floats and ggml's q4_0 and
 * q8_0 blocks. Other types (the k-quants, i-quants, ...) are listed by name but not read.
 */
const SIZED_TYPES: Partial<Record<number, { name: string; weightsPerBlock: number; bytesPerBlock: number }>> = {
  [GGMLQuantizationType.F32]: { name: 'F32', weightsPerBlock: 1, bytesPerBlock: 4 },
  [GGMLQuantizationType.F16]: { name: 'F16', weightsPerBlock: 1, bytesPerBlock: 2 },
  [GGMLQuantizationType.BF16]: { name: 'BF16', weightsPerBlock: 1, bytesPerBlock: 2 },
  [GGMLQuantizationType.Q4_0]: { name: 'Q4_0', weightsPerBlock: 32, bytesPerBlock: 18 },
  [GGMLQuantizationType.Q8_0]: { name: 'Q8_0', weightsPerBlock: 32, bytesPerBlock: 34 },
};

/** One tensor of a GGUF file, as its header describes it. */
export interface GgufTensor {
  name: string;
  /** The ggml type's name (`Q4_0`, `F16`, `Q6_K`, ...), or `type N` for a number ggml-js does not name. */
  type: string;
  /** ggml's `ne`: dims[0] is the fastest-varying (a weight matrix's columns, K), dims[1] its rows (N). */
  dims: number[];
  /** Where the tensor's bytes start in the file, and how many there are (undefined for types kgen cannot size). */
  fileOffset: number;
  byteLength?: number;
}

/** A GGUF file's tensors and the metadata kgen shows (the architecture and model name). */
export interface GgufIndex {
  path: string;
  version: number;
  architecture?: string;
  modelName?: string;
  tensors: GgufTensor[];
}

/** GGUF's data alignment where a file's metadata names none (`general.alignment`). */
const GGUF_DEFAULT_ALIGNMENT = 32;

/**
 * Reads the header of the GGUF file at `path` with `@huggingface/gguf` (the tensor bytes stay on
 * disk). A file that is not GGUF, is big-endian (see `isBigEndianGguf`), is cut short, or describes a tensor past its end
 * is a KgenError naming `field`, never a parser's stack.
 */
export async function readGgufIndex(path: string, field: string): Promise<GgufIndex> {
  const size = statRegularFile(path, field, 'a GGUF file').size;
  if (isBigEndianGguf(path, field)) throw bigEndian(path, field);
  let parsed;
  try {
    parsed = await gguf(path, { allowLocalFile: true });
  } catch (e) {
    throw new KgenError({ field, problem: `${pathText(path)} is not a readable GGUF file (${oneLine(String((e as Error).message ?? e), 160)})`, expected: 'a GGUF file (llama.cpp\'s model format)' });
  }
  // The parser reads past the end of a short file as zeros: its header must end inside the file.
  const headerEnd = parsed.tensorInfoByteRange[1];
  if (headerEnd > size) throw new KgenError({ field, problem: `${pathText(path)} is cut short: its header runs to byte ${headerEnd} of ${size}`, expected: 'a complete GGUF file', hint: 'download or copy it again' });
  const start = Number(parsed.tensorDataOffset);
  const declared = (parsed.metadata as Record<string, unknown>)['general.alignment'];
  const alignment = typeof declared === 'number' && declared > 0 ? declared : GGUF_DEFAULT_ALIGNMENT;
  const tensors = parsed.tensorInfos.map((t): GgufTensor => {
    if (Number(t.offset) % alignment !== 0) {
      throw new KgenError({ field, problem: `tensor ${quoted(t.name)} of ${pathText(path)} starts at data offset ${t.offset}, not a multiple of the file's alignment ${alignment}`, expected: 'a well-formed GGUF file' });
    }
    const dims = t.shape.map(Number);
    const sized = SIZED_TYPES[t.dtype];
    const count = dims.reduce((a, b) => a * b, 1);
    const tensor: GgufTensor = { name: t.name, type: sized?.name ?? GGMLQuantizationType[t.dtype] ?? `unknown (${t.dtype})`, dims, fileOffset: start + Number(t.offset) };
    if (sized) {
      if (count % sized.weightsPerBlock !== 0) throw new KgenError({ field, problem: `tensor ${quoted(t.name)} of ${pathText(path)} has ${count} values, not whole ${sized.name} blocks of ${sized.weightsPerBlock}`, expected: 'a well-formed GGUF file' });
      tensor.byteLength = (count / sized.weightsPerBlock) * sized.bytesPerBlock;
      if (tensor.fileOffset + tensor.byteLength > size) {
        throw new KgenError({ field, problem: `tensor ${quoted(t.name)} ends at byte ${tensor.fileOffset + tensor.byteLength} of ${pathText(path)}, which has ${size}`, expected: 'a complete GGUF file', hint: 'the file was cut short: download or copy it again' });
      }
    }
    return tensor;
  });
  const text = (key: string) => {
    const v = (parsed.metadata as Record<string, unknown>)[key];
    return typeof v === 'string' ? v : undefined;
  };
  return { path, version: Number(parsed.metadata.version), architecture: text('general.architecture'), modelName: text('general.name'), tensors };
}

/** The bytes of `tensor` (a sized type: see `GgufTensor.byteLength`), read from the file. */
export function readGgufTensor(path: string, tensor: GgufTensor, field: string): Uint8Array {
  if (tensor.byteLength === undefined) throw new InternalError(`GGUF tensor ${tensor.name} of type ${tensor.type} has no known size`);
  const out = new Uint8Array(tensor.byteLength);
  const read = readAt(path, tensor.fileOffset, out, field);
  if (read < out.length) throw new KgenError({ field, problem: `${pathText(path)} ended inside tensor ${quoted(tensor.name)}`, hint: 'the file changed while kgen read it' });
  return out;
}

/** Fills `out` from byte `start` of the file at `path`; returns how many bytes there were (fewer at its end). */
function readAt(path: string, start: number, out: Uint8Array, field: string): number {
  let fd;
  let done = 0;
  try {
    fd = openSync(path, 'r');
    while (done < out.length) {
      const n = readSync(fd, out, done, out.length - done, start + done);
      if (n === 0) break;
      done += n;
    }
  } catch (e) {
    throw fsError(field, 'read', path, e, 'check the path');
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return done;
}

/** At most this many tensors or metadata pairs: a count above it read one way is the other byte order. */
const PLAUSIBLE_COUNT = 10_000_000n;

/**
 * Whether a GGUF header is big-endian, told as llama.cpp tells it: the version (1 to 3) read
 * little-endian has its low 16 bits zero. A header whose version reads little-endian but whose
 * tensor and metadata counts are plausible only read big-endian counts as big-endian too (the
 * parser would report an absurd tensor count). A file without GGUF's magic is left to the parser.
 */
function isBigEndianGguf(path: string, field: string): boolean {
  const head = new Uint8Array(24);
  const n = readAt(path, 0, head, field);
  const view = new DataView(head.buffer);
  if (n < 8 || new TextDecoder().decode(head.subarray(0, 4)) !== 'GGUF') return false;
  if ((view.getUint32(4, true) & 0xffff) === 0) return true;
  const plausible = (le: boolean) => view.getBigUint64(8, le) <= PLAUSIBLE_COUNT && view.getBigUint64(16, le) <= PLAUSIBLE_COUNT;
  return n === head.length && !plausible(true) && plausible(false);
}

function bigEndian(path: string, field: string): KgenError {
  return new KgenError({
    field,
    problem: `${pathText(path)} is a big-endian GGUF file (written for s390x or another big-endian machine)`,
    expected: 'a little-endian GGUF file: kgen reads only those, whose blocks kernels take as they are',
    hint: 'use the model\'s little-endian GGUF, or convert a copy with llama.cpp\'s gguf-py: `gguf-convert-endian COPY little` (it rewrites the file in place)',
  });
}
