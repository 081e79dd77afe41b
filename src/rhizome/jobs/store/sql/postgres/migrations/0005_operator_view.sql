-- The operator's view (issue 16): why the current run was claimed, each job's own log,
-- lifetime metrics written by the workers, and an index for the dashboards' time windows.

-- Why the job's current (or last) run started: NULL (its first run), 'resume' (resumed
-- after a pause), 'release' (handed back by a stopping worker), 'retry' (after a failure)
-- or 'takeover' (its worker stopped heartbeating). A claim counts a new attempt only for
-- a first run, a retry or a takeover, never for a resume or a release.
ALTER TABLE background_jobs ADD COLUMN claim_reason text
    CHECK (claim_reason IN ('resume', 'release', 'retry', 'takeover'));

-- The dashboards read job_events by time.
CREATE INDEX job_events_at_idx ON job_events (at);

-- What a handler logged while it ran (bounded per job by the worker; deleted with the job).
CREATE TABLE job_logs (
    id        bigserial PRIMARY KEY,
    job_id    uuid NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    level     text NOT NULL,
    logger    text NOT NULL,
    message   text NOT NULL,
    stage     text,
    worker_id text,
    attempt   integer
);
CREATE INDEX job_logs_job_idx ON job_logs (job_id, id);

-- Lifetime counters and histogram buckets, one row per worker process and series; a
-- worker adds its increments every heartbeat, and folds its rows into worker_id '*' when
-- it stops. /metrics sums them.
CREATE TABLE job_metrics (
    worker_id  text NOT NULL,
    metric     text NOT NULL,
    job_type   text NOT NULL,
    label      text NOT NULL DEFAULT '',
    value      double precision NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (worker_id, metric, job_type, label)
);

-- Live views follow the logs and the queue controls too.
CREATE TRIGGER job_logs_changed
    AFTER INSERT ON job_logs
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_notify_changes();
CREATE TRIGGER queue_controls_changed
    AFTER INSERT OR UPDATE OR DELETE ON queue_controls
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_notify_changes();
