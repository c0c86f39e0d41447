import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import Handlebars from 'handlebars';
import { textHash } from '../hash.js';
import { packagePath } from '../package-files.js';
import { InternalError } from '../errors.js';

/** `templates/` at the package root. */
export function templatesDir(): string {
  return packagePath('templates');
}

function walk(dir: string): string[] {
  return readdirSync(dir).sort().flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.hbs') ? [p] : [];
  });
}

/**
 * One target's templates: every `.hbs` file under `templates/<target>/`, compiled once. Files are
 * addressed by path without the extension (`isa/avx2_q8`); every file is also a partial. Strict
 * mode makes a template that names a missing value fail loudly instead of printing nothing.
 */
export class TemplateSet {
  readonly hash: string;
  private readonly hb = Handlebars.create();
  private readonly sources = new Map<string, string>();
  private readonly compiled = new Map<string, HandlebarsTemplateDelegate>();

  constructor(target: string) {
    const root = join(templatesDir(), target);
    const texts: string[] = [];
    for (const file of walk(root)) {
      const name = relative(root, file).replace(/\\/g, '/').replace(/\.hbs$/, '');
      const text = readFileSync(file, 'utf8');
      this.sources.set(name, text);
      this.hb.registerPartial(name, text);
      texts.push(name, text);
    }
    this.hash = textHash(texts.join('\0'));
  }

  has(name: string): boolean {
    return this.sources.has(name);
  }

  render(name: string, view: object): string {
    let t = this.compiled.get(name);
    if (!t) {
      const src = this.sources.get(name);
      if (src === undefined) throw new InternalError(`no template ${name}`);
      t = this.hb.compile(src, { noEscape: true, strict: true });
      this.compiled.set(name, t);
    }
    return t(view);
  }
}

const sets = new Map<string, TemplateSet>();
export function templateSet(target: string): TemplateSet {
  let s = sets.get(target);
  if (!s) sets.set(target, (s = new TemplateSet(target)));
  return s;
}
