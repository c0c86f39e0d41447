import type { WeightFormatName, WeightSpec } from '../ir/types.js';
import { KgenError } from '../errors.js';
import { fileHash } from '../hash.js';
import { FORMATS } from '../quant/index.js';
import { codecLayout } from './pack.js';
import { KGEN_VERSION } from '../version.js';

/**
 * The sidecar `kgen pack` writes beside packed weights (`w.q35` -> `w.q35.json`): what the bytes
 * are, in which layout version, and their digest. Kernels read the raw bytes; the sidecar is how
 * kgen (and a loader) tells a file of an older layout from a current one instead of misreading
 * it: q3.5 layout 1 and 2 have the same size and bits per weight but decode to other values.
 *
 * Invariant: `bytes` = `rowBytes` * `N`, and `sha256` is the digest of exactly those bytes.
 */
export interface PackedSidecar {
  kind: 'kgen-packed-weights';
  /** The kgen that packed the file. */
  kgenVersion: string;
  format: WeightFormatName;
  /** `WeightFormat.version` when the file was written; a reader refuses any other. */
  formatVersion: number;
  groupSize?: number;
  N: number;
  K: number;
  rowBytes: number;
  bytes: number;
  bitsPerWeight: number;
  /** Hex sha256 of the packed bytes. */
  sha256: string;
}

/** The sidecar's path for packed weights at `path`. */
export function sidecarPath(path: string): string {
  return `${path}.json`;
}

/** The sidecar for freshly packed bytes. */
export function packedSidecar(r: { spec: WeightSpec; N: number; K: number; rowBytes: number; bitsPerWeight: number; bytes: Uint8Array }): PackedSidecar {
  return {
    kind: 'kgen-packed-weights',
    kgenVersion: KGEN_VERSION,
    format: r.spec.format,
    formatVersion: FORMATS[r.spec.format].version,
    ...(r.spec.groupSize !== undefined ? { groupSize: r.spec.groupSize } : {}),
    N: r.N,
    K: r.K,
    rowBytes: r.rowBytes,
    bytes: r.bytes.length,
    bitsPerWeight: r.bitsPerWeight,
    sha256: fileHash(r.bytes),
  };
}

/** What a packed file holds, once its sidecar (or the caller's description) was checked. */
export interface PackedWeights {
  spec: WeightSpec;
  N: number;
  K: number;
  bytes: Uint8Array;
  /** Where the description came from: the sidecar, or the caller's flags for a raw file. */
  describedBy: 'sidecar' | 'flags';
}

/** How a caller describes raw bytes that have no sidecar (flags `--format`, `--group`, `--shape`). */
export interface RawDescription {
  format: string;
  groupSize?: number;
  N: number;
  K: number;
}

/**
 * Checks packed bytes against their sidecar text (undefined: none was found) and returns what
 * they hold. Refused, each with what to do: a sidecar of another layout version (older bytes
 * would decode to other values), bytes whose size or digest differ from the sidecar's, and raw
 * bytes without a sidecar in a format whose layout has changed since kgen first wrote it
 * (version > 1: they cannot be told apart from the old layout). Raw bytes of a format still at
 * layout 1 are accepted when `raw` describes them.
 *
 * `field` names the flag the file came from; `shown` is its path as messages print it.
 */
export function checkPacked(opts: { bytes: Uint8Array; sidecar: unknown; raw?: RawDescription; field: string; shown: string }): PackedWeights {
  const { bytes, field, shown } = opts;
  if (opts.sidecar === undefined) return describeRaw(opts);
  const s = sidecarFields(opts.sidecar, `${field} sidecar`, shown);
  const current = FORMATS[s.format].version;
  const named = `${s.format}${s.groupSize !== undefined ? ` (group ${s.groupSize})` : ''} at N=${s.N},K=${s.K}`;
  const edited = 'the sidecar was edited or belongs to other bytes: restore the one `kgen pack` wrote, or pack the weights again';
  let layout;
  try {
    layout = codecLayout({ format: s.format, groupSize: s.groupSize, N: s.N, K: s.K });
  } catch (e) {
    if (!(e instanceof KgenError)) throw e;
    throw new KgenError({ field: `${field} sidecar`, problem: `names ${named}, but ${e.problem}`, expected: e.expected, hint: edited });
  }
  // Sizes first: a sidecar edited to name another format (or shape) is a mismatch, not an old
  // layout; a genuine old file passes (q35 layout 1 and 2 have the same size).
  if (layout.rowBytes !== s.rowBytes || layout.rowBytes * s.N !== s.bytes) {
    throw new KgenError({
      field: `${field} sidecar`,
      problem: `names ${named}, which takes ${layout.rowBytes} bytes a row (${layout.rowBytes * s.N} in all), but it also says ${s.rowBytes} a row (${s.bytes} in all)${s.bytes === bytes.length ? `, as ${shown}'s size does` : ''}`,
      expected: 'a sidecar whose format, group size and shape match its byte counts',
      hint: edited,
    });
  }
  if (bytes.length !== s.bytes) {
    throw new KgenError({ field, problem: `${shown} has ${bytes.length} bytes but its sidecar says ${s.bytes}`, expected: `${s.bytes} bytes`, hint: 'the file was cut short or replaced: pack the weights again' });
  }
  if (s.formatVersion !== current) {
    throw new KgenError({
      field,
      problem: `${shown} holds ${s.format} bytes of layout ${s.formatVersion} (packed by kgen ${s.kgenVersion}), and this kgen reads ${s.format} layout ${current}`,
      expected: `${s.format} layout ${current}`,
      hint: 'pack the f32 weights again with this kgen (`kgen pack`); old bytes would be misread, not converted',
    });
  }
  const digest = fileHash(bytes);
  if (digest !== s.sha256) {
    throw new KgenError({ field, problem: `${shown} does not match its sidecar's sha256`, expected: `bytes with sha256 ${s.sha256}`, hint: 'the bytes changed after packing (or the sidecar belongs to another file): pack the weights again' });
  }
  return { spec: layout.spec, N: s.N, K: s.K, bytes, describedBy: 'sidecar' };
}

function describeRaw(opts: { bytes: Uint8Array; raw?: RawDescription; field: string; shown: string }): PackedWeights {
  const { raw, field, shown } = opts;
  if (!raw) {
    throw new KgenError({ field, problem: `${shown} has no sidecar beside it (\`kgen pack\` writes one: the file's name plus .json)`, expected: 'packed weights with their sidecar', hint: 'keep the .json beside the file, or describe raw bytes with --format, --shape (and --group)' });
  }
  const layout = codecLayout({ format: raw.format, groupSize: raw.groupSize, N: raw.N, K: raw.K });
  const format = layout.spec.format;
  const version = FORMATS[format].version;
  if (version > 1) {
    throw new KgenError({
      field,
      problem: `${shown} has no sidecar, and raw ${format} bytes cannot be told apart from ${format} layout 1, which this kgen (layout ${version}) would misread`,
      expected: `${format} weights packed with their sidecar`,
      hint: 'pack the f32 weights again with this kgen (`kgen pack` writes the sidecar)',
    });
  }
  const expected = layout.rowBytes * raw.N;
  if (opts.bytes.length !== expected) {
    throw new KgenError({ field, problem: `${shown} has ${opts.bytes.length} bytes but ${format} N=${raw.N},K=${raw.K} takes ${expected}`, expected: `${expected} bytes`, hint: 'check --format, --group and --shape against the file' });
  }
  return { spec: layout.spec, N: raw.N, K: raw.K, bytes: opts.bytes, describedBy: 'flags' };
}

/** The sidecar's fields, each checked for its type; a KgenError names the first one wrong. */
function sidecarFields(value: unknown, field: string, shown: string): PackedSidecar {
  const bad = (name: string, expected: string): never => {
    throw new KgenError({ field: `${field}.${name}`, problem: `missing or malformed in the sidecar of ${shown}`, expected, hint: 'the sidecar is not one `kgen pack` wrote: pack the weights again' });
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad('kind', 'a JSON object');
  const v = value as Record<string, unknown>;
  if (v.kind !== 'kgen-packed-weights') bad('kind', '"kgen-packed-weights"');
  if (typeof v.format !== 'string' || !Object.hasOwn(FORMATS, v.format)) bad('format', `one of ${Object.keys(FORMATS).join(', ')}`);
  const count = (name: string): number => {
    const n = v[name];
    return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : bad(name, 'a whole number');
  };
  for (const name of ['formatVersion', 'N', 'K', 'rowBytes', 'bytes']) count(name);
  if (v.groupSize !== undefined) count('groupSize');
  if (typeof v.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(v.sha256)) bad('sha256', '64 hex digits');
  if (typeof v.kgenVersion !== 'string') bad('kgenVersion', 'a version string');
  return v as unknown as PackedSidecar;
}
