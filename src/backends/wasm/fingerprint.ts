import { execa } from 'execa';
import { hostIsa } from '../../device/host.js';
import type { DeviceProfile } from '../../device/profile.js';
import { templateSet } from '../../render/templates.js';
import type { Fingerprint } from '../types.js';
import { assembleWat } from './assemble.js';
import { RELAXED_DOT } from './probe.js';
import { HARNESS_NODE_FLAGS } from './runner.js';
import { InternalError } from '../../errors.js';

/** Prints 1 or 0: the probe's verdict in the Node the harness runs in (argv[1]: the probe module, base64). */
const VERDICT_SCRIPT = `let ok = false;
try { ok = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(process.argv[1], 'base64'))).exports.probe() === 1; } catch {}
process.stdout.write(ok ? '1' : '0');`;

let level: Promise<string> | undefined;

/**
 * The instruction level the WebAssembly harness runs kernels at on this machine: relaxed where the
 * probe passes in a Node started as the harness is (same binary and flags), else simd128.
 */
export function harnessLevel(): Promise<string> {
  level ??= (async () => {
    const probe = await assembleWat('probe.wat', templateSet('wasm').render('probe.wat', RELAXED_DOT));
    if ('error' in probe) throw new InternalError(`the relaxed-SIMD probe does not assemble: ${probe.error}`);
    const r = await execa(process.execPath, [...HARNESS_NODE_FLAGS, '-e', VERDICT_SCRIPT, Buffer.from(probe.bytes).toString('base64')], { reject: false });
    return r.stdout.trim() === '1' ? 'relaxed' : 'simd128';
  })();
  return level;
}

/**
 * What a WebAssembly measurement depends on beyond the profile: the engine (Node and its V8) and
 * its flags, the CPU it runs on, and the instruction level the harness's probe picks there.
 */
export async function wasmFingerprint(device: DeviceProfile): Promise<Fingerprint> {
  const host = hostIsa();
  return {
    profile: device.name,
    target: 'wasm',
    engine: `node ${process.version}`,
    v8: process.versions.v8,
    engineFlags: HARNESS_NODE_FLAGS.join(' '),
    cpu: host.model.trim(),
    arch: host.arch,
    level: await harnessLevel(),
  };
}
