import { execa } from 'execa';
import { ToolMissingError } from '../errors.js';

/**
 * The external tools runners use (compilers, emulators, nvcc, compute-sanitizer): one detection
 * and one version query per tool and process, so every runner agrees on what is installed.
 */

const found = new Map<string, Promise<boolean>>();
const versions = new Map<string, Promise<string>>();

/** Whether `tool` (a command name or a path) can be run here; asked once per process. */
export function hasTool(tool: string): Promise<boolean> {
  let f = found.get(tool);
  if (!f) {
    // The name is passed as an argument, never spliced into the script.
    f = execa('sh', ['-c', 'command -v "$1" > /dev/null', 'sh', tool], { reject: false }).then((r) => r.exitCode === 0);
    found.set(tool, f);
  }
  return f;
}

/** Throws ToolMissingError (naming the tool and how to install it) when `tool` is absent. */
export async function requireTool(tool: string, installHint: string): Promise<void> {
  if (!(await hasTool(tool))) throw new ToolMissingError(tool, installHint);
}

/**
 * The tool's version as `parse` reads it from `tool --version` (or `args`), asked once per process
 * and tool; `missing` when the tool does not run, `unknown` when its output has no version.
 */
export function toolVersion(tool: string, parse: (output: string) => string | undefined, args: string[] = ['--version']): Promise<string> {
  const key = `${tool}\0${args.join(' ')}`;
  let v = versions.get(key);
  if (!v) {
    v = execa(tool, args, { reject: false, all: true }).then((r) => (r.exitCode === 0 ? (parse(r.all ?? '') ?? 'unknown') : 'missing'), () => 'missing');
    versions.set(key, v);
  }
  return v;
}

/** nvcc's full version ("13.0.88" from "V13.0.88", else the release "13.0"), or `missing`. */
export function nvccVersion(nvcc = 'nvcc'): Promise<string> {
  return toolVersion(nvcc, (out) => /, V(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? /release (\d+\.\d+)/.exec(out)?.[1]);
}

/**
 * The real GPU architectures an nvcc can build for, as `nvcc --list-gpu-code` lists them
 * (`sm_75`, `sm_89`, ...: the names device profiles use). `unlisted` when this nvcc has no such
 * option (before CUDA 11.0) or lists nothing: whether it supports an arch is then unknown, and
 * only a compile can tell.
 */
export type NvccArchs =
  | { status: 'listed'; nvcc: string; version: string; archs: string[] }
  | { status: 'unlisted'; nvcc: string; version: string };

const nvccArchLists = new Map<string, Promise<NvccArchs>>();

/** The GPU architectures `nvcc` supports; asked once per nvcc path and version and process. */
export async function nvccArchs(nvcc = 'nvcc'): Promise<NvccArchs> {
  const version = await nvccVersion(nvcc);
  const key = `${nvcc}\0${version}`;
  let a = nvccArchLists.get(key);
  if (!a) {
    a = execa(nvcc, ['--list-gpu-code'], { reject: false, all: true }).then(
      (r): NvccArchs => {
        const archs = r.exitCode === 0 ? (r.stdout ?? '').split(/\s+/).filter((s) => /^sm_\w+$/.test(s)) : [];
        return archs.length ? { status: 'listed', nvcc, version, archs } : { status: 'unlisted', nvcc, version };
      },
      (): NvccArchs => ({ status: 'unlisted', nvcc, version }),
    );
    nvccArchLists.set(key, a);
  }
  return a;
}
