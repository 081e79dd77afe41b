-- The job system core: background_jobs, job_events, workers (DESIGN §3).

CREATE TABLE background_jobs (
    id                    uuid PRIMARY KEY,
    job_type              text NOT NULL,
    user_id               text NOT NULL DEFAULT 'local',
    entity_type           text,
    entity_id             text,
    priority              integer NOT NULL DEFAULT 0,
    dedupe_key            text,
    input_data            jsonb NOT NULL DEFAULT '{}'::jsonb,
    output_data           jsonb,
    progress              jsonb NOT NULL DEFAULT '{}'::jsonb,
    status                text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'paused', 'completed', 'failed', 'cancelled')),
    created_at            timestamptz NOT NULL DEFAULT now(),
    run_at                timestamptz NOT NULL DEFAULT now(),
    started_at            timestamptz,
    completed_at          timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now(),
    worker_id             text,
    heartbeat_at          timestamptz,
    lease_expires_at      timestamptz,
    attempt               integer NOT NULL DEFAULT 0,
    retry_count           integer NOT NULL DEFAULT 0,
    max_retries           integer NOT NULL DEFAULT 3,
    next_retry_at         timestamptz,
    last_error            text,
    error_type            text CHECK (error_type IN ('transient', 'permanent', 'paywall', 'invalid')),
    error_message         text,
    pause_requested       boolean NOT NULL DEFAULT false,
    cancel_requested      boolean NOT NULL DEFAULT false,
    paused_at             timestamptz,
    resumed_at            timestamptz,
    pause_reason          text,
    resume_count          integer NOT NULL DEFAULT 0,
    last_checkpoint_path  text,
    last_checkpoint_stage text,
    checkpoint_hash       text
);

-- The claim path only ever touches runnable rows: terminal rows never slow it down.
CREATE INDEX background_jobs_pending_idx ON background_jobs (priority DESC, created_at)
    WHERE status = 'pending';
CREATE INDEX background_jobs_lease_idx ON background_jobs (lease_expires_at)
    WHERE status = 'processing';
CREATE INDEX background_jobs_worker_idx ON background_jobs (worker_id)
    WHERE status = 'processing';
CREATE INDEX background_jobs_retry_idx ON background_jobs (next_retry_at)
    WHERE status = 'failed' AND next_retry_at IS NOT NULL;
-- At most one unfinished job per dedupe key.
CREATE UNIQUE INDEX background_jobs_dedupe_idx ON background_jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'processing', 'paused');
CREATE INDEX background_jobs_user_created_idx ON background_jobs (user_id, created_at DESC);
CREATE INDEX background_jobs_entity_idx ON background_jobs (entity_type, entity_id);

-- Append-only timeline. No foreign key: a deleted job keeps one tombstone event.
CREATE TABLE job_events (
    id          bigserial PRIMARY KEY,
    job_id      uuid NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    from_status text,
    to_status   text,
    stage       text,
    message     text,
    worker_id   text
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);

CREATE TABLE workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    concurrency  integer NOT NULL,
    job_types    text,
    stopped_at   timestamptz
);
