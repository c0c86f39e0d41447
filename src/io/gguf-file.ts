import { closeSync, openSync, readSync } from 'node:fs';
import { gguf, GGMLQuantizationType } from '@huggingface/gguf';
import { KgenError } from '../errors.js';
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
 * disk). A file that is not GGUF, is big-endian, is cut short, or describes a tensor past its end
 * is a KgenError naming `field`, never a parser's stack.
 */
export async function readGgufIndex(path: string, field: string): Promise<GgufIndex> {
  const size = statRegularFile(path, field, 'a GGUF file').size;
  let parsed;
  try {
    parsed = await gguf(path, { allowLocalFile: true });
  } catch (e) {
    throw new KgenError({ field, problem: `${pathText(path)} is not a readable GGUF file (${oneLine(String((e as Error).message ?? e), 160)})`, expected: 'a GGUF file (llama.cpp\'s model format)' });
  }
  if (!parsed.littleEndian) throw new KgenError({ field, problem: `${pathText(path)} is a big-endian GGUF file`, expected: 'a little-endian GGUF file, whose blocks kernels read as they are' });
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
  if (tensor.byteLength === undefined) throw new Error(`kgen: GGUF tensor ${tensor.name} of type ${tensor.type} has no known size`);
  const out = new Uint8Array(tensor.byteLength);
  let fd;
  try {
    fd = openSync(path, 'r');
    for (let done = 0; done < out.length; ) {
      const n = readSync(fd, out, done, out.length - done, tensor.fileOffset + done);
      if (n === 0) throw new KgenError({ field, problem: `${pathText(path)} ended inside tensor ${quoted(tensor.name)}`, hint: 'the file changed while kgen read it' });
      done += n;
    }
  } catch (e) {
    if (e instanceof KgenError) throw e;
    throw fsError(field, 'read', path, e, 'check the path');
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  return out;
}
