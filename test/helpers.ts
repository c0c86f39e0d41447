import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { swiftShaderIcd } from '../src/device/index.js';

/** True when `tool` is on PATH. Tests that need it skip with a printed reason otherwise. */
export function hasTool(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function skipReason(tools: string[]): string | undefined {
  const missing = tools.filter((t) => !hasTool(t));
  if (missing.length === 0) return undefined;
  const reason = `missing ${missing.join(', ')} (\`.ci/run\` installs them: gcc-aarch64-linux-gnu, qemu-user)`;
  console.warn(`SKIP: ${reason}`);
  return reason;
}

/**
 * Why WGSL kernels cannot run here (no SwiftShader ICD, no webgpu package), printed once with
 * `what`; undefined when they can.
 */
export function dawnSkipReason(what: string): string | undefined {
  let reason: string | undefined;
  if (!swiftShaderIcd()) reason = 'no SwiftShader Vulkan ICD (`.ci/run` installs Debian\'s chromium package for it: scripts/install-tools.sh)';
  else {
    try {
      import.meta.resolve('webgpu');
    } catch {
      reason = 'the npm package webgpu is not installed (npm ci)';
    }
  }
  if (reason) console.warn(`SKIP: ${what}: ${reason}`);
  return reason;
}

/** User IRs that cover f16 activations and outputs and every fused epilogue, for each backend's tests. */
export const EPILOGUE_IRS = [
  { kind: 'matmul', name: 'ffn_gate', x: 'f16', y: 'f16', weight: { format: 'q4_0' }, epilogue: { bias: true, activation: 'silu', residual: true } },
  { kind: 'matmul', name: 'proj_gelu', x: 'f32', y: 'f32', weight: { format: 'q35', groupSize: 32 }, epilogue: { bias: true, activation: 'gelu' } },
  { kind: 'matmul', name: 'proj_res', x: 'f16', y: 'f32', weight: { format: 'f16' }, epilogue: { residual: true } },
  { kind: 'matmul', name: 'q8_g128', x: 'f32', y: 'f16', weight: { format: 'q8', groupSize: 128 }, epilogue: { activation: 'silu' } },
];

/** Every entry under `dir`: type, size and a hash of the bytes, so a test can prove nothing changed. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out[p] = 'dir';
        walk(p);
      } else if (st.isFile()) out[p] = `file ${st.size} ${createHash('sha1').update(readFileSync(p)).digest('hex')}`;
      else out[p] = `special ${st.mode}`;
    }
  };
  walk(dir);
  return out;
}
