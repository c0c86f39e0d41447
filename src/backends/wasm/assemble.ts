import wabtInit from 'wabt';

/**
 * WebAssembly text to binary, in-process with wabt (no tool to install). The features the kernels
 * use are enabled: SIMD128 and relaxed SIMD (a module that uses relaxed SIMD still only runs where
 * the engine accepts it; the probe decides).
 */

type Wabt = Awaited<ReturnType<typeof wabtInit>>;
let wabt: Promise<Wabt> | undefined;

/** The binary of `text`, or the assembler's message (a compile error, never an exception). */
export async function assembleWat(name: string, text: string): Promise<{ bytes: Uint8Array } | { error: string }> {
  wabt ??= wabtInit();
  const w = await wabt;
  let module;
  try {
    module = w.parseWat(name, text, { simd: true, relaxed_simd: true });
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  }
  try {
    module.validate();
    return { bytes: new Uint8Array(module.toBinary({}).buffer) };
  } catch (e) {
    return { error: e instanceof Error ? e.message : String(e) };
  } finally {
    module.destroy();
  }
}
