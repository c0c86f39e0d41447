import { execFileSync } from 'node:child_process';

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
