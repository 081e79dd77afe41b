-- Named queries of the job store, PostgreSQL dialect (psycopg 3, %(name)s parameters).
-- Each block starts with "-- name: <query_name>". The status literals in the hot-path
-- queries (claim, heartbeat, complete, expire, promote) mirror rhizome.jobs.states;
-- tests/unit/test_states.py checks that they agree.

-- name: insert_job
INSERT INTO background_jobs (
    id, job_type, user_id, entity_type, entity_id, priority, dedupe_key, input_data,
    max_retries, run_at, progress
) VALUES (
    %(id)s, %(job_type)s, %(user_id)s, %(entity_type)s, %(entity_id)s, %(priority)s,
    %(dedupe_key)s, %(input_data)s, %(max_retries)s, COALESCE(%(run_at)s, now()), %(progress)s
)
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL
    AND (status IN ('pending', 'processing', 'paused')
         OR (status = 'failed' AND next_retry_at IS NOT NULL)) DO NOTHING
RETURNING *;

-- name: insert_jobs
WITH ins AS (
    INSERT INTO background_jobs (
        id, job_type, user_id, entity_type, entity_id, priority, input_data, max_retries, run_at,
        progress
    )
    SELECT d.id, d.job_type, d.user_id, d.entity_type, d.entity_id, d.priority, d.input_data,
           d.max_retries, COALESCE(d.run_at, now()), d.progress
    FROM unnest(
        %(ids)s::uuid[], %(job_types)s::text[], %(user_ids)s::text[], %(entity_types)s::text[],
        %(entity_ids)s::text[], %(priorities)s::int[], %(inputs)s::jsonb[], %(max_retries)s::int[],
        %(run_ats)s::timestamptz[], %(progresses)s::jsonb[]
    ) AS d(id, job_type, user_id, entity_type, entity_id, priority, input_data, max_retries,
           run_at, progress)
    RETURNING *
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, message)
    SELECT id, NULL, 'pending', 'created' FROM ins
)
SELECT * FROM ins;

-- name: find_unfinished_by_dedupe
SELECT * FROM background_jobs
WHERE dedupe_key = %(dedupe_key)s
  AND (status IN ('pending', 'processing', 'paused')
       OR (status = 'failed' AND next_retry_at IS NOT NULL));

-- name: insert_event
INSERT INTO job_events (job_id, from_status, to_status, stage, message, worker_id)
VALUES (%(job_id)s, %(from_status)s, %(to_status)s, %(stage)s, %(message)s, %(worker_id)s);

-- name: notify_wakeup
SELECT pg_notify('rhizome_wakeup', %(job_type)s);

-- name: get_job
SELECT * FROM background_jobs WHERE id = %(id)s;

-- name: lock_job
SELECT * FROM background_jobs WHERE id = %(id)s FOR UPDATE;

-- name: owned_job
-- The fence (SqlJobStore.fence): the job is still this worker's; the row stays locked
-- (against takeovers and the reaper) until the transaction that asked commits.
SELECT 1 AS ok FROM background_jobs
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status = 'processing'
FOR SHARE;

-- name: count_jobs
SELECT status, job_type, count(*) AS n FROM background_jobs
WHERE (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
GROUP BY status, job_type;

-- name: list_events
SELECT * FROM job_events WHERE job_id = %(id)s ORDER BY id;

-- name: claim
-- One statement: pick up to %(limit)s due jobs (pending, or processing with an expired
-- lease), highest priority then oldest first, lock them without waiting on other workers,
-- take them over and write their timeline events.
WITH due_pending AS (
    SELECT id, status, priority, created_at, worker_id FROM background_jobs
    WHERE status = 'pending' AND run_at <= now()
      AND (%(types)s::text[] IS NULL OR job_type = ANY(%(types)s::text[]))
      AND job_type NOT IN (SELECT q.job_type FROM queue_controls q WHERE q.paused)
      AND NOT EXISTS (SELECT 1 FROM queue_controls q WHERE q.paused AND q.job_type = '*')
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), due_expired AS (
    SELECT id, status, priority, created_at, worker_id FROM background_jobs
    WHERE status = 'processing' AND lease_expires_at < now()
      AND takeovers < %(max_takeovers)s  -- a crash loop is failed by the reaper instead
      AND (%(types)s::text[] IS NULL OR job_type = ANY(%(types)s::text[]))
      AND job_type NOT IN (SELECT q.job_type FROM queue_controls q WHERE q.paused)
      AND NOT EXISTS (SELECT 1 FROM queue_controls q WHERE q.paused AND q.job_type = '*')
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id, status, worker_id FROM (
        SELECT * FROM due_pending UNION ALL SELECT * FROM due_expired
    ) c
    ORDER BY priority DESC, created_at
    LIMIT %(limit)s
), claimed AS (
    UPDATE background_jobs j
    SET status = 'processing',
        worker_id = %(worker_id)s,
        -- a new attempt: the first run, a retry or a takeover; not a resume or a release
        attempt = j.attempt + CASE WHEN j.attempt = 0 OR p.status = 'processing'
                                        OR j.claim_reason IS NULL
                                        OR j.claim_reason IN ('retry', 'takeover')
                                   THEN 1 ELSE 0 END,
        claim_reason = CASE WHEN p.status = 'processing' THEN 'takeover'
                            ELSE j.claim_reason END,
        takeovers = j.takeovers + CASE WHEN p.status = 'processing' THEN 1 ELSE 0 END,
        started_at = COALESCE(j.started_at, now()),
        heartbeat_at = now(),
        lease_expires_at = now() + make_interval(secs => %(lease)s),
        updated_at = now()
    FROM picked p
    WHERE j.id = p.id
    RETURNING j.*, p.status AS from_status, p.worker_id AS previous_worker
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, stage, message, worker_id)
    SELECT id, from_status, 'processing', progress->>'stage',
           CASE WHEN from_status = 'processing'
                THEN 'lease expired; taken over from ' || COALESCE(previous_worker, '?')
                     || ' (attempt ' || attempt || ')'
                ELSE 'claimed (attempt ' || attempt || ')' END,
           worker_id
    FROM claimed
)
SELECT * FROM claimed;

-- name: heartbeat
WITH seen AS (
    UPDATE workers SET last_seen_at = now() WHERE id = %(worker_id)s
)
-- Only the jobs the worker names (those it runs or holds now): a job it gave up on, or
-- could not record the end of, must not keep a live lease because the worker lives on.
UPDATE background_jobs
SET heartbeat_at = now(), lease_expires_at = now() + make_interval(secs => %(lease)s)
WHERE id = ANY(%(ids)s::uuid[]) AND worker_id = %(worker_id)s AND status = 'processing'
RETURNING id, pause_requested, cancel_requested;

-- name: update_progress
UPDATE background_jobs SET progress = %(progress)s, updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status = 'processing'
RETURNING pause_requested, cancel_requested;

-- name: record_checkpoint
UPDATE background_jobs
SET progress = %(progress)s, last_checkpoint_path = %(path)s,
    last_checkpoint_stage = %(stage)s, checkpoint_hash = %(hash)s, updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND status = 'processing'
RETURNING pause_requested, cancel_requested;

-- name: complete_jobs
-- Completions are buffered by the worker and written in one statement.
WITH done AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(outputs)s::jsonb[]) AS d(id, output)
), updated AS (
    UPDATE background_jobs j
    SET status = 'completed', output_data = d.output, completed_at = now(), updated_at = now(),
        lease_expires_at = NULL, next_retry_at = NULL, pause_requested = false,
        cancel_requested = false, last_checkpoint_path = NULL, last_checkpoint_stage = NULL,
        checkpoint_hash = NULL,
        progress = (j.progress - 'checkpoint') || '{"percent": 100}'::jsonb
    FROM done d
    WHERE j.id = d.id AND j.status = 'processing' AND j.worker_id = %(worker_id)s
    RETURNING j.id, j.progress->>'stage' AS stage
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, stage, message, worker_id)
    SELECT id, 'processing', 'completed', stage, 'completed', %(worker_id)s FROM updated
)
SELECT id FROM updated;

-- name: set_failed
UPDATE background_jobs
SET status = 'failed', error_type = %(error_type)s, last_error = %(last_error)s,
    error_message = %(error_message)s, retry_count = retry_count + %(retry_increment)s,
    next_retry_at = CASE WHEN %(retry_delay)s::float8 IS NULL THEN NULL
                         ELSE now() + make_interval(secs => %(retry_delay)s::float8) END,
    completed_at = CASE WHEN %(retry_delay)s::float8 IS NULL THEN now() ELSE NULL END,
    lease_expires_at = NULL, pause_requested = false, cancel_requested = false,
    updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: set_paused
UPDATE background_jobs
SET status = 'paused', paused_at = now(), pause_reason = CASE WHEN pause_requested THEN COALESCE(pause_reason, %(reason)s) ELSE %(reason)s END,
    pause_requested = false,
    lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: set_cancelled
UPDATE background_jobs
SET status = 'cancelled', completed_at = now(), cancel_requested = false,
    pause_requested = false, next_retry_at = NULL, lease_expires_at = NULL, updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: set_released
-- Back to pending; with a delay (the storage or the database failed under the job) it
-- waits that long, counted in infra_retries, which sets the next delay.
UPDATE background_jobs
SET status = 'pending', lease_expires_at = NULL, updated_at = now(), claim_reason = 'release',
    run_at = now() + make_interval(secs => %(delay)s::float8),
    infra_retries = infra_retries + CASE WHEN %(delay)s::float8 > 0 THEN 1 ELSE 0 END
WHERE id = %(id)s
RETURNING *;

-- name: crash_loops
-- Jobs whose lease ran out again after max_takeovers takeovers: every worker that ran
-- them died. The reaper fails them (permanent) instead of handing them on.
SELECT * FROM background_jobs
WHERE status = 'processing' AND lease_expires_at < now() AND takeovers >= %(max_takeovers)s
FOR UPDATE SKIP LOCKED;

-- name: set_resumed
UPDATE background_jobs
SET status = 'pending', takeovers = 0, resumed_at = now(), resume_count = resume_count + 1,
    pause_requested = false, run_at = now(), updated_at = now(), claim_reason = 'resume',
    last_checkpoint_path = CASE WHEN %(restart)s THEN NULL ELSE last_checkpoint_path END,
    last_checkpoint_stage = CASE WHEN %(restart)s THEN NULL ELSE last_checkpoint_stage END,
    checkpoint_hash = CASE WHEN %(restart)s THEN NULL ELSE checkpoint_hash END,
    progress = CASE WHEN %(restart)s THEN progress - 'checkpoint' ELSE progress END
WHERE id = %(id)s
RETURNING *;

-- name: set_retried
UPDATE background_jobs
SET status = 'pending', takeovers = 0, next_retry_at = NULL, completed_at = NULL, run_at = now(),
    claim_reason = 'retry',
    retry_count = CASE WHEN %(reset_retries)s THEN 0 ELSE retry_count END,
    error_type = NULL, error_message = NULL, cancel_requested = false, pause_requested = false,
    updated_at = now(),
    last_checkpoint_path = CASE WHEN %(restart)s THEN NULL ELSE last_checkpoint_path END,
    last_checkpoint_stage = CASE WHEN %(restart)s THEN NULL ELSE last_checkpoint_stage END,
    checkpoint_hash = CASE WHEN %(restart)s THEN NULL ELSE checkpoint_hash END,
    progress = CASE WHEN %(restart)s THEN progress - 'checkpoint' ELSE progress END
WHERE id = %(id)s
RETURNING *;

-- name: clear_checkpoint
UPDATE background_jobs
SET last_checkpoint_path = NULL, last_checkpoint_stage = NULL, checkpoint_hash = NULL,
    progress = progress - 'checkpoint', updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: set_control
UPDATE background_jobs
SET pause_requested = %(pause_requested)s, cancel_requested = %(cancel_requested)s,
    pause_reason = COALESCE(%(reason)s, pause_reason), updated_at = now()
WHERE id = %(id)s
RETURNING *;

-- name: delete_job
DELETE FROM background_jobs WHERE id = %(id)s;

-- name: delete_job_events
DELETE FROM job_events WHERE job_id = %(id)s;

-- name: expire_leases
-- The reaper: jobs whose worker stopped heartbeating go back to pending (DESIGN §4).
WITH expired AS (
    SELECT id FROM background_jobs
    WHERE status = 'processing' AND lease_expires_at < now()
      AND takeovers < %(max_takeovers)s  -- crash loops: see crash_loops
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE background_jobs j SET status = 'pending', lease_expires_at = NULL, updated_at = now(),
        claim_reason = 'takeover', takeovers = j.takeovers + 1
    FROM expired e WHERE j.id = e.id
    RETURNING j.id, j.progress->>'stage' AS stage, j.worker_id
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, stage, message, worker_id)
    SELECT id, 'processing', 'pending', stage,
           'lease expired: worker ' || COALESCE(worker_id, '?') || ' stopped heartbeating',
           worker_id
    FROM updated
)
SELECT id FROM updated;

-- name: promote_retries
-- Failed jobs whose automatic retry is due become pending again.
WITH due AS (
    SELECT id FROM background_jobs
    WHERE status = 'failed' AND next_retry_at IS NOT NULL
      AND next_retry_at <= COALESCE(%(as_of)s::timestamptz, now())
    FOR UPDATE SKIP LOCKED
), updated AS (
    UPDATE background_jobs j
    SET status = 'pending', next_retry_at = NULL, run_at = now(), updated_at = now(),
        claim_reason = 'retry'
    FROM due WHERE j.id = due.id
    RETURNING j.id, j.progress->>'stage' AS stage, j.retry_count, j.max_retries
), events AS (
    INSERT INTO job_events (job_id, from_status, to_status, stage, message)
    SELECT id, 'failed', 'pending', stage,
           'automatic retry ' || retry_count || ' of ' || max_retries || ' is due'
    FROM updated
)
SELECT id FROM updated;

-- name: insert_worker
INSERT INTO workers (id, host, pid, concurrency, job_types)
VALUES (%(id)s, %(host)s, %(pid)s, %(concurrency)s, %(job_types)s);

-- name: stop_worker
UPDATE workers SET stopped_at = now(), last_seen_at = now() WHERE id = %(id)s;

-- name: list_workers
SELECT * FROM workers
WHERE stopped_at IS NULL OR stopped_at > now() - interval '1 day'
ORDER BY started_at DESC;

-- name: ping
SELECT 1 AS ok;
