-- kgen tuning database, schema version 2: trials.status admits 'unsupported', a trial this machine
-- could not run (its adapter lacks a feature or has narrower subgroups than the plan's, its nvcc
-- does not list the plan's arch). It says nothing about the config; before schema 2 such trials
-- were recorded as 'compile_error', and those rows stay as they were.
-- SQLite cannot alter a CHECK: the table is rebuilt. Every row keeps its id and every column its
-- value; the indexes are made again and the foreign key to workloads stays. The migration runs in
-- kgen's one migration transaction, so a failure leaves schema 1 as it was.

ALTER TABLE trials RENAME TO trials_schema1;

-- status's CHECK still admits the legacy 'over_budget' (see 001_initial.sql): old rows keep it.
CREATE TABLE trials (
  id            INTEGER PRIMARY KEY,
  uid           TEXT NOT NULL UNIQUE,         -- random; identifies a trial across exports and imports
  workload_id   INTEGER NOT NULL REFERENCES workloads (id),
  config_hash   TEXT NOT NULL,
  config_json   TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('ok', 'over_budget', 'compile_error', 'crash', 'timeout', 'wrong_result', 'unsupported')),
  median_ms     REAL,
  min_ms        REAL,
  max_ms        REAL,
  spread        REAL,
  runs          INTEGER,
  nmse          REAL,
  max_abs_error REAL,
  error         TEXT,                         -- compiler or runtime text; for 'unsupported', why it could not run
  compile_ms    REAL,
  strategy      TEXT,
  runner        TEXT,                         -- native, qemu-aarch64, cuda-gpu, ...
  origin        TEXT NOT NULL,                -- where it was measured (hostname) or imported from
  created_at    TEXT NOT NULL,
  CHECK ((status = 'ok') = (median_ms IS NOT NULL)),
  CHECK (status = 'ok' OR (min_ms IS NULL AND max_ms IS NULL AND runs IS NULL))
);

INSERT INTO trials (id, uid, workload_id, config_hash, config_json, status, median_ms, min_ms, max_ms, spread, runs, nmse, max_abs_error, error, compile_ms, strategy, runner, origin, created_at)
  SELECT id, uid, workload_id, config_hash, config_json, status, median_ms, min_ms, max_ms, spread, runs, nmse, max_abs_error, error, compile_ms, strategy, runner, origin, created_at FROM trials_schema1;

-- Dropping the old table drops its indexes too: they are made again on the new one.
DROP TABLE trials_schema1;
CREATE INDEX trials_by_workload ON trials (workload_id, config_hash);
CREATE INDEX trials_best ON trials (workload_id, status, median_ms);
