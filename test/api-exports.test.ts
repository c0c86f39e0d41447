// The library's public types: every named type an export of `kgen` mentions (a parameter, a result,
// a field, and so on through the types those mention) is exported by name, so a caller can write it.
// Static: a walk of the built declarations (dist/src/index.d.ts) with the TypeScript compiler API.
import { join } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const DIST = join(import.meta.dirname, '..', 'dist', 'src');
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
