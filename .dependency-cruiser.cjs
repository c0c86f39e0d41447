/**
 * kgen's layer order, checked by dependency-cruiser in `npm test` (`npm run check:layers`).
 * Data flows one way: a module may import from its own layer and the layers before it, never
 * from a later one, and nothing may import in a circle (type-only imports count). The order is
 * the one docs/ARCHITECTURE.md states.
 */
const LAYERS = [
  // Shared foundations: errors, hashing, safe input/output, numbers, package paths, the version.
  ['base', '^src/(errors|hash|version|package-files)\\.ts$|^src/(io|numeric)/'],
  ['ir', '^src/ir/'],
  ['quant', '^src/quant/'],
  ['reference', '^src/reference/'],
  ['device', '^src/device/'],
  ['plan', '^src/plan/'],
  ['ops', '^src/ops/'],
  ['render', '^src/render/'],
  ['backends', '^src/backends/'],
  ['db', '^src/db/'],
  ['tune', '^src/tune/'],
  ['api', '^src/api/'],
  ['cli', '^src/cli/|^src/index\\.ts$'],
];

const later = (i) => LAYERS.slice(i + 1).map(([, path]) => `(${path})`).join('|');

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'Layers import downward only; a cycle means two modules depend on each other.',
      from: {},
      to: { circular: true },
    },
    ...LAYERS.slice(0, -1).map(([name, path], i) => ({
      name: `${name}-imports-downward-only`,
      severity: 'error',
      comment: `${name} may import only from itself and earlier layers (${LAYERS.slice(0, i).map(([n]) => n).join(', ') || 'none'})`,
      from: { path },
      to: { path: later(i) },
    })),
    {
      name: 'no-target-folder-above-backends',
      severity: 'error',
      comment: 'The database, the tuner and the library API reach a target only through the registry (src/backends/registry.ts) and the Target interface, never its own folder.',
      from: { path: '^src/(db|tune|api)/' },
      to: { path: '^src/backends/(c|cuda|wgsl|wasm)/' },
    },
    {
      name: 'every-module-in-a-layer',
      severity: 'error',
      comment: 'A new folder under src/ needs its place in the layer order (this file and docs/ARCHITECTURE.md).',
      from: { path: '^src/', pathNot: LAYERS.map(([, path]) => `(${path})`).join('|') },
      to: {},
    },
    {
      name: 'no-unresolvable',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
