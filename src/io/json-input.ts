import { KgenError } from '../errors.js';
import { oneLine } from './message-text.js';

/** Limits on JSON a user hands kgen, checked before anything recurses over the parsed value. */
export interface JsonLimits {
  /** Characters of text at most. */
  maxChars: number;
  /** Nesting of arrays and objects at most. */
  maxDepth: number;
}

/** An op's IR or a config: small objects, a few levels deep. */
export const SMALL_JSON: JsonLimits = { maxChars: 1 << 20, maxDepth: 32 };
/** A tuning export or a run.sh result: large, but never deeper than workloads/trials/timing. */
export const RECORDS_JSON: JsonLimits = { maxChars: 256 << 20, maxDepth: 32 };

/**
 * The nesting depth of JSON text, counted over brackets outside strings, stopping early once it
 * passes `limit`. Iterative, so any input is safe to measure.
 */
export function jsonDepth(text: string, limit = Infinity): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/**
 * Parses JSON a user gave (a flag's value or a file's text). Too long, too deep or malformed text
 * is a KgenError naming `field`; the parser's message is reduced to one line and never quotes
 * the input back.
 */
export function parseJsonInput(text: string, opts: { field: string; expected: string; limits?: JsonLimits; /** The file the text came from, shown in messages (already `pathText`ed). */
  source?: string }): unknown {
  const limits = opts.limits ?? SMALL_JSON;
  const what = opts.source ? `${opts.source} is ` : '';
  if (text.length > limits.maxChars) {
    throw new KgenError({ field: opts.field, problem: `${opts.source ?? 'the text'} is ${text.length} characters long, more than the ${limits.maxChars} accepted`, expected: opts.expected });
  }
  if (jsonDepth(text, limits.maxDepth) > limits.maxDepth) {
    throw new KgenError({ field: opts.field, problem: `${opts.source ? `${opts.source} ` : ''}nests arrays or objects more than ${limits.maxDepth} levels deep`, expected: opts.expected });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    // V8 quotes the start of the input ("Unexpected token 'x', "{x..." is not valid JSON"): drop it.
    const reason = oneLine((e as Error).message.replace(/,\s*"[\s\S]*"(\.\.\.)? is not valid JSON$/, ''), 80);
    throw new KgenError({ field: opts.field, problem: `${what}not valid JSON (${reason})`, expected: opts.expected });
  }
}
