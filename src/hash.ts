import { createHash } from 'node:crypto';

/**
 * JSON with object keys sorted at every depth, so equal values always serialise to equal text.
 * Every cache key and record key in kgen goes through this one function.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value as Record<string, unknown>).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** First 16 hex digits of sha256 over the canonical JSON of `value`. */
export function canonicalHash(value: unknown): string {
  return fileHash(canonicalJson(value)).slice(0, 16);
}

/** sha256 (16 hex digits) of raw text, for template and source hashes. */
export function textHash(text: string): string {
  return fileHash(text).slice(0, 16);
}

/** Full hex sha256 (64 digits) of bytes, or of text's UTF-8 bytes: the digest of a file holding `content`. */
export function fileHash(content: string | Uint8Array): string {
  return createHash('sha256').update(content).digest('hex');
}
