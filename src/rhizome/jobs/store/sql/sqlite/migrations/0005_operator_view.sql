-- The operator's view (issue 16): why the current run was claimed, each job's own log,
-- lifetime metrics written by the workers, and an index for the dashboards' time windows.

-- Why the job's current (or last) run started: NULL (its first run), 'resume' (resumed
-- after a pause), 'release' (handed back by a stopping worker), 'retry' (after a failure)
-- or 'takeover' (its worker stopped heartbeating). A claim counts a new attempt only for
-- a first run, a retry or a takeover, never for a resume or a release.
ALTER TABLE background_jobs ADD COLUMN claim_reason TEXT
    CHECK (claim_reason IN ('resume', 'release', 'retry', 'takeover'));

-- The dashboards read job_events by time.
CREATE INDEX job_events_at_idx ON job_events (at);

-- What a handler logged while it ran (bounded per job by the worker; deleted with the job).
CREATE TABLE job_logs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id    TEXT NOT NULL,
    at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    level     TEXT NOT NULL,
    logger    TEXT NOT NULL,
    message   TEXT NOT NULL,
    stage     TEXT,
    worker_id TEXT,
    attempt   INTEGER
);
CREATE INDEX job_logs_job_idx ON job_logs (job_id, id);

-- Lifetime counters and histogram buckets, one row per worker process and series; a
-- worker adds its increments every heartbeat, and folds its rows into worker_id '*' when
-- it stops. /metrics sums them.
CREATE TABLE job_metrics (
    worker_id  TEXT NOT NULL,
    metric     TEXT NOT NULL,
    job_type   TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    value      REAL NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (worker_id, metric, job_type, label)
);
