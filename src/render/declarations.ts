import { createRequire } from 'node:module';
import type * as TsMorph from 'ts-morph';
import type { SourceFile, VariableStatement, WriterFunction } from 'ts-morph';

let loaded: typeof TsMorph | undefined;

/**
 * ts-morph, loaded on first use: it loads the TypeScript compiler (about 0.9 s), which only the
 * declaration files of the WebAssembly and WGSL targets need, so `import 'kgen'` and the CLI's
 * other commands do not wait for it. Renderers take its enums from here, never by a value import.
 */
export function tsMorph(): typeof TsMorph {
  return (loaded ??= createRequire(import.meta.url)('ts-morph') as typeof TsMorph);
}

/**
 * A TypeScript declaration file built with ts-morph (an AST, not concatenated text): `build` adds
 * the declarations to an in-memory source file; the result is ts-morph's formatted text after
 * `header` (comment lines). Invariant: the text parses as TypeScript (ts-morph writes nodes, so a
 * doc string or name cannot break the file's structure).
 */
export function declarationFile(name: string, header: string[], build: (file: SourceFile) => void, opts: { referenceTypes?: string[] } = {}): string {
  const project = new (tsMorph().Project)({ useInMemoryFileSystem: true, compilerOptions: { declaration: true } });
  const file = project.createSourceFile(name, '', { overwrite: true });
  build(file);
  file.formatText({ indentSize: 2 });
  const references = (opts.referenceTypes ?? []).map((t) => `/// <reference types="${t}" />\n`).join('');
  return `${header.map((l) => `// ${l}`).join('\n')}\n${references}${file.getFullText()}`;
}

/**
 * Adds `export declare const NAME: TYPE;` to `file`, under its doc comment when `doc` is given: the
 * one kind of constant the declaration files hold (a literal type stating a figure of the kernel).
 */
export function declareConst(file: SourceFile, constant: { name: string; type: string | WriterFunction; doc?: string }): VariableStatement {
  const { name, type, doc } = constant;
  return file.addVariableStatement({ isExported: true, hasDeclareKeyword: true, declarationKind: tsMorph().VariableDeclarationKind.Const, ...(doc !== undefined ? { docs: [doc] } : {}), declarations: [{ name, type }] });
}

/** A doc comment's text with the sequence that would end it made inert. */
export function docText(text: string): string {
  return text.replace(/\*\//g, '*\\/');
}
