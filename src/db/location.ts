import { homedir } from 'node:os';
import { join } from 'node:path';

/** The environment variable that overrides the default database location. */
export const DB_ENV = 'KGEN_DB';

/**
 * Where the tuning database lives unless `--db` says otherwise: `$KGEN_DB`, else
 * `$XDG_DATA_HOME/kgen/tuning.db`, else `~/.local/share/kgen/tuning.db`. Callers pass the
 * environment explicitly (no hidden global switch).
 */
export function defaultDbPath(env: NodeJS.ProcessEnv): string {
  const fromEnv = env[DB_ENV];
  if (fromEnv) return fromEnv;
  const data = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(data, 'kgen', 'tuning.db');
}
