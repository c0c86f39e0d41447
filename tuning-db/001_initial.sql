-- kgen tuning database, schema version 1.
-- A workload is what a measurement depends on: device fingerprint, target, op (IR hash), shape,
-- weight format, template hash and kgen version. A trial is one config measured on a workload:
-- the config (the plan's inputs, never generated code), a status, and times only when it ran ok.

CREATE TABLE workloads (
  id               INTEGER PRIMARY KEY,
  key              TEXT NOT NULL UNIQUE,      -- canonical hash of the columns below
  device           TEXT NOT NULL,             -- profile name (host, rtx4090, ...)
  fingerprint      TEXT NOT NULL,             -- canonical JSON: hardware, driver, compiler
  fingerprint_hash TEXT NOT NULL,
  target           TEXT NOT NULL,
  op_name          TEXT NOT NULL,
  ir_hash          TEXT NOT NULL,
  op_json          TEXT NOT NULL,
  shape_json       TEXT NOT NULL,             -- canonical JSON of the bound dimensions
  weight_format    TEXT,                      -- matmul only
  template_hash    TEXT NOT NULL,
  kgen_version     TEXT NOT NULL,
  bytes            REAL NOT NULL,             -- traffic and work of one call, for GB/s and GFLOPS
  flops            REAL NOT NULL,
  roofline_ms      REAL NOT NULL,             -- the device's bound for one call
  created_at       TEXT NOT NULL
);
CREATE INDEX workloads_lookup ON workloads (device, target, ir_hash);

-- status's CHECK still admits 'over_budget', a legacy status no kgen writes any more (a config over
-- a budget is pruned before it compiles: TRIAL_STATUSES in src/backends/types.ts). The comment
-- stands outside the statement: kgen knows its databases by this CREATE TABLE's exact text.
CREATE TABLE trials (
  id            INTEGER PRIMARY KEY,
  uid           TEXT NOT NULL UNIQUE,         -- random; identifies a trial across exports and imports
  workload_id   INTEGER NOT NULL REFERENCES workloads (id),
  config_hash   TEXT NOT NULL,
  config_json   TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('ok', 'over_budget', 'compile_error', 'crash', 'timeout', 'wrong_result')),
  median_ms     REAL,
  min_ms        REAL,
  max_ms        REAL,
  spread        REAL,
  runs          INTEGER,
  nmse          REAL,
  max_abs_error REAL,
  error         TEXT,                         -- compiler or runtime text, budget message
  compile_ms    REAL,
  strategy      TEXT,
  runner        TEXT,                         -- native, qemu-aarch64, cuda-gpu, ...
  origin        TEXT NOT NULL,                -- where it was measured (hostname) or imported from
  created_at    TEXT NOT NULL,
  CHECK ((status = 'ok') = (median_ms IS NOT NULL)),
  CHECK (status = 'ok' OR (min_ms IS NULL AND max_ms IS NULL AND runs IS NULL))
);
CREATE INDEX trials_by_workload ON trials (workload_id, config_hash);
CREATE INDEX trials_best ON trials (workload_id, status, median_ms);
