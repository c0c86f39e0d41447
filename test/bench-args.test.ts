import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';

// The bench entry points as `npm test` builds them (dist/ is built before vitest runs).
const dist = join(import.meta.dirname, '..', 'dist', 'bench');
const bench = (script: string, args: string[]) => execa(process.execPath, [join(dist, script), ...args], { reject: false });

describe.concurrent('bench command lines', () => {
  it('an unknown flag stops the bench with its name instead of running everything without it', async () => {
    const r = await bench('run.js', ['--cases', 'gemv', '--no-wsgl']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("'--no-wsgl'");
    expect(r.stderr).toContain('--no-wgsl'); // the options are listed
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stdout).toBe('');
  });

  it('an option without its value and a stray word are refused', async () => {
    const missing = await bench('decode.js', ['--rounds']);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain("'--rounds <value>'");
    const stray = await bench('quant-quality.js', ['rows']);
    expect(stray.exitCode).toBe(2);
    expect(stray.stderr).toContain("'rows'");
    const nan = await bench('quant-quality.js', ['--rows', 'many']);
    expect(nan.exitCode).toBe(2);
    expect(nan.stderr).toContain("--rows needs a number, got 'many'");
  });

  it('--help and -h print each entry point\'s options and run nothing', async () => {
    for (const [script, option] of [
      ['run.js', '--attn-formats'],
      ['decode.js', '--baseline'],
      ['gpu.js', '--tune-trials'],
      ['quant-quality.js', '--fit'],
    ] as const) {
      for (const help of ['--help', '-h']) {
        const r = await bench(script, [help]);
        expect(r.exitCode, `${script} ${help}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toContain(option);
        expect(r.stderr).toBe('');
      }
    }
  });
});
