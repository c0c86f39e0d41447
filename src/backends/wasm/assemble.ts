import wabtInit from 'wabt';
import type { RenderedKernel } from '../types.js';

/**
 * WebAssembly text to binary, in-process with wabt (no tool to install). The features the kernels
 * use are enabled: SIMD128, relaxed SIMD and threads (a shared memory import) (a module that uses relaxed SIMD still only runs where
 * the engine accepts it; the probe decides).
 */

const FEATURES = { simd: true, relaxed_simd: true, threads: true };

type Wabt = Awaited<ReturnType<typeof wabtInit>>;
let wabt: Promise<Wabt> | undefined;

/** The binary of `text`, or the assembler's message (a compile error, never an exception). */
export async function assembleWat(name: string, text: string): Promise<{ bytes: Uint8Array } | { error: string }> {
  wabt ??= wabtInit();
  const w = await wabt;
  let module;
  try {
    module = w.parseWat(name, text, FEATURES);
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
  try {
    // wabt 1.0.39's declarations omit validate's features argument, which its implementation reads
    // (without it a shared memory import fails validation).
    (module as unknown as { validate(features: typeof FEATURES): void }).validate(FEATURES);
    return { bytes: new Uint8Array(module.toBinary({}).buffer) };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  } finally {
    module.destroy();
  }
}

/** Each module text of a rendered kernel and the binary it assembles to (the last marks a complete build). */
export const MODULES: Record<string, string> = {
  'probe.wat': 'probe.wasm',
  'kernel.relaxed.shared.wat': 'kernel.relaxed.shared.wasm',
  'kernel.shared.wat': 'kernel.shared.wasm',
  'kernel.relaxed.wat': 'kernel.relaxed.wasm',
  'kernel.wat': 'kernel.wasm',
};

/** The binaries of a rendered WebAssembly kernel, or the assembler's message. */
export async function assembleKernel(kernel: RenderedKernel): Promise<{ files: Record<string, Uint8Array> } | { error: string }> {
  const files: Record<string, Uint8Array> = {};
  for (const [text, binary] of Object.entries(MODULES)) {
    const source = kernel.files[text];
    if (source === undefined) continue;
    const r = await assembleWat(text, source);
    if ('error' in r) return { error: `${text}: ${r.error}` };
    files[binary] = r.bytes;
  }
  return { files };
}
