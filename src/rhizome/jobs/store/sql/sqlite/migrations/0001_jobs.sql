-- The job system core: background_jobs, job_events, workers (DESIGN §3).
-- Times are ISO-8601 UTC text with milliseconds ('2026-11-23T03:00:00.000Z'): sortable.

CREATE TABLE background_jobs (
    id                    TEXT PRIMARY KEY,
    job_type              TEXT NOT NULL,
    user_id               TEXT NOT NULL DEFAULT 'local',
    entity_type           TEXT,
    entity_id             TEXT,
    priority              INTEGER NOT NULL DEFAULT 0,
    dedupe_key            TEXT,
    input_data            TEXT NOT NULL DEFAULT '{}',
    output_data           TEXT,
    progress              TEXT NOT NULL DEFAULT '{}',
    status                TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'paused', 'completed', 'failed', 'cancelled')),
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    run_at                TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at            TEXT,
    completed_at          TEXT,
    updated_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    worker_id             TEXT,
    heartbeat_at          TEXT,
    lease_expires_at      TEXT,
    attempt               INTEGER NOT NULL DEFAULT 0,
    retry_count           INTEGER NOT NULL DEFAULT 0,
    max_retries           INTEGER NOT NULL DEFAULT 3,
    next_retry_at         TEXT,
    last_error            TEXT,
    error_type            TEXT CHECK (error_type IN ('transient', 'permanent', 'paywall', 'invalid')),
    error_message         TEXT,
    pause_requested       INTEGER NOT NULL DEFAULT 0,
    cancel_requested      INTEGER NOT NULL DEFAULT 0,
    paused_at             TEXT,
    resumed_at            TEXT,
    pause_reason          TEXT,
    resume_count          INTEGER NOT NULL DEFAULT 0,
    last_checkpoint_path  TEXT,
    last_checkpoint_stage TEXT,
    checkpoint_hash       TEXT
);

CREATE INDEX background_jobs_pending_idx ON background_jobs (priority DESC, created_at)
    WHERE status = 'pending';
CREATE INDEX background_jobs_lease_idx ON background_jobs (lease_expires_at)
    WHERE status = 'processing';
CREATE INDEX background_jobs_worker_idx ON background_jobs (worker_id)
    WHERE status = 'processing';
CREATE INDEX background_jobs_retry_idx ON background_jobs (next_retry_at)
    WHERE status = 'failed' AND next_retry_at IS NOT NULL;
CREATE UNIQUE INDEX background_jobs_dedupe_idx ON background_jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'processing', 'paused');
CREATE INDEX background_jobs_user_created_idx ON background_jobs (user_id, created_at DESC);
CREATE INDEX background_jobs_entity_idx ON background_jobs (entity_type, entity_id);

CREATE TABLE job_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL,
    at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    from_status TEXT,
    to_status   TEXT,
    stage       TEXT,
    message     TEXT,
    worker_id   TEXT
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    last_seen_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    concurrency  INTEGER NOT NULL,
    job_types    TEXT,
    stopped_at   TEXT
);
