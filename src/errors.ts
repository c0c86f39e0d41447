/**
 * A user-facing error: something the caller asked for is wrong or impossible.
 *
 * Invariant: `field` names the flag, file or IR path at fault (`--shape`, `config.nTile`,
 * `ir.inputs[0].name`), `expected` says what would have been accepted, and `hint` says what to
 * do next. The CLI prints `message` on one line and exits 2; it never prints a stack for these.
 */
export class KgenError extends Error {
  readonly field: string;
  /** What is wrong, without the field (`got 48`). */
  readonly problem: string;
  readonly expected: string;
  readonly hint: string;

  constructor(opts: { field: string; problem: string; expected?: string; hint?: string }) {
    const expected = opts.expected ?? '';
    const hint = opts.hint ?? '';
    const parts = [`${opts.field}: ${opts.problem}`];
    if (expected) parts.push(`expected ${expected}`);
    if (hint) parts.push(hint);
    super(parts.join('; '));
    this.name = 'KgenError';
    this.field = opts.field;
    this.problem = opts.problem;
    this.expected = expected;
    this.hint = hint;
  }
}

/**
 * A plan that does not fit the device: the budget, what it needs and what is available. Kept
 * distinct from other user errors so callers can tell "this config does not fit" from a mistake.
 */
export class BudgetError extends KgenError {
  readonly budget: string;
  readonly needed: number;
  readonly available: number;

  constructor(opts: { budget: string; needed: number; available: number; unit?: string; field?: string; hint?: string }) {
    const unit = opts.unit ?? 'bytes';
    super({
      field: opts.field ?? '--config',
      problem: `over budget: ${opts.budget} needs ${opts.needed} ${unit} but ${opts.available} are available`,
      hint: opts.hint ?? 'choose smaller tiles or omit --config to use the default',
    });
    this.name = 'BudgetError';
    this.budget = opts.budget;
    this.needed = opts.needed;
    this.available = opts.available;
  }
}

/** A tool the operation needs (a compiler, an emulator, a package) is not installed; `problem` says how it was missed. */
export class ToolMissingError extends KgenError {
  constructor(tool: string, hint: string, problem = 'not found on PATH') {
    super({ field: tool, problem, hint });
    this.name = 'ToolMissingError';
  }
}

/**
 * A broken invariant between kgen's own layers (a plan its planner could not have made reaching a
 * renderer): a kgen bug, never the caller's request. Deliberately not a KgenError, so the CLI does
 * not print it as a usage error: it leaves with its stack and exit code 70.
 */
export class InternalError extends Error {
  constructor(message: string) {
    super(`kgen: internal: ${message}`);
    this.name = 'InternalError';
  }
}
