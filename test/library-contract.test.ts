// What kgen promises a library user, checked statically (no pack, no install): every named type an
// export of `kgen` mentions (a parameter, a result, a field, and so on through the types those
// mention) is exported by name, so a caller can write it (a walk of the built declarations,
// dist/src/index.d.ts, with the TypeScript compiler API); and the Node its package.json names runs it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist', 'src');
const ENTRY = join(DIST, 'index.d.ts');

/** A named type's own kind: what a caller could import (type parameters and values are not). */
const NAMED_TYPE = ts.SymbolFlags.Interface | ts.SymbolFlags.TypeAlias | ts.SymbolFlags.Class | ts.SymbolFlags.Enum;

/**
 * The kgen types reachable from the entry's exports that the entry does not export, as
 * `Name (file)`. Walks declarations syntactically (a .d.ts states every type), skipping private
 * members; types from outside kgen (Node, lib, dependencies) are not followed.
 */
function unexportedTypes(): string[] {
  const program = ts.createProgram([ENTRY], { strict: true, types: [], noEmit: true, skipLibCheck: true });
  const checker = program.getTypeChecker();
  const entry = checker.getSymbolAtLocation(program.getSourceFile(ENTRY)!)!;
  const resolve = (s: ts.Symbol): ts.Symbol => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
  const exported = new Set(checker.getExportsOfModule(entry).map(resolve));
  const seen = new Set<ts.Symbol>(exported);
  const missing = new Set<string>();
  const ours = (d: ts.Declaration): boolean => d.getSourceFile().fileName.startsWith(DIST);

  const visitSymbol = (symbol: ts.Symbol | undefined): void => {
    if (!symbol) return;
    const target = resolve(symbol);
    if (seen.has(target) || !(target.flags & NAMED_TYPE)) return;
    seen.add(target);
    const decls = (target.declarations ?? []).filter(ours);
    if (decls.length === 0) return;
    if (!exported.has(target)) missing.add(`${target.name} (${decls[0]!.getSourceFile().fileName.slice(DIST.length + 1)})`);
    decls.forEach(walk);
  };
  const walk = (node: ts.Node): void => {
    const modifiers = ts.canHaveModifiers(node) ? ts.getModifiers(node) : undefined;
    if (modifiers?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword || m.kind === ts.SyntaxKind.ProtectedKeyword)) return;
    if (ts.isTypeReferenceNode(node)) visitSymbol(checker.getSymbolAtLocation(ts.isQualifiedName(node.typeName) ? node.typeName.right : node.typeName));
    else if (ts.isExpressionWithTypeArguments(node)) visitSymbol(checker.getSymbolAtLocation(node.expression));
    else if (ts.isImportTypeNode(node) && node.qualifier) visitSymbol(checker.getSymbolAtLocation(ts.isQualifiedName(node.qualifier) ? node.qualifier.right : node.qualifier));
    ts.forEachChild(node, walk);
  };
  for (const symbol of exported) (symbol.declarations ?? []).filter(ours).forEach(walk);
  return [...missing].sort();
}

describe("kgen's entry", () => {
  it('exports every named type its exports mention', () => {
    expect(unexportedTypes()).toEqual([]);
  });
});

type Version = [number, number, number];

/** `20`, `20.6`, `20.6.1` as [major, minor, patch]. */
function version(text: string): Version {
  const [major = 0, minor = 0, patch = 0] = text.split('.').map(Number);
  return [major, minor, patch];
}

const compare = (a: Version, b: Version): number => a[0] - b[0] || a[1] - b[1] || a[2] - b[2];

/**
 * Whether Node `v` is in an engines range of the forms kgen's dependencies use: alternatives
 * joined by `||`, each `>=A.B.C`, `^A.B.C` or `A.x`.
 */
function inRange(v: Version, range: string): boolean {
  return range.split('||').map((r) => r.trim()).some((r) => {
    const m = /^(>=|\^)?(\d+(?:\.\d+){0,2})(\.x)?$/.exec(r);
    if (!m) throw new Error(`engines range ${r} is of a form this test does not read`);
    const floor = version(m[2]!);
    return compare(v, floor) >= 0 && (m[1] === '>=' || v[0] === floor[0]);
  });
}

describe("kgen's package.json", () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string }; dependencies: Record<string, string> };

  it("names a Node that every dependency installed with kgen runs on, as README's Library says", () => {
    const floor = /^>=(\d+(?:\.\d+){0,2})$/.exec(pkg.engines.node)?.[1];
    expect(floor).toBeDefined();
    const refused = Object.keys(pkg.dependencies).flatMap((dep) => {
      const range = (JSON.parse(readFileSync(join(ROOT, 'node_modules', dep, 'package.json'), 'utf8')) as { engines?: { node?: string } }).engines?.node;
      return range === undefined || inRange(version(floor!), range) ? [] : [`${dep} needs node ${range}`];
    });
    expect(refused).toEqual([]);
    expect(readFileSync(join(ROOT, 'README.md'), 'utf8')).toContain(`(\`npm install kgen\`, Node ${floor}+)`);
  });
});
