-- Named queries of the job store, SQLite dialect (:name parameters; lists arrive as JSON).
-- NOW is written out as strftime('%Y-%m-%dT%H:%M:%fZ', 'now'). Batch operations run as
-- several of these statements inside one BEGIN IMMEDIATE transaction.

-- name: insert_job
INSERT INTO background_jobs (
    id, job_type, user_id, entity_type, entity_id, priority, dedupe_key, input_data,
    max_retries, run_at, progress
) VALUES (
    :id, :job_type, :user_id, :entity_type, :entity_id, :priority, :dedupe_key, :input_data,
    :max_retries, COALESCE(:run_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), :progress
)
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL
    AND (status IN ('pending', 'processing', 'paused')
         OR (status = 'failed' AND next_retry_at IS NOT NULL)) DO NOTHING
RETURNING *;

-- name: insert_created_event
INSERT INTO job_events (job_id, from_status, to_status, message)
VALUES (:id, NULL, 'pending', 'created');

-- name: find_unfinished_by_dedupe
SELECT * FROM background_jobs
WHERE dedupe_key = :dedupe_key
  AND (status IN ('pending', 'processing', 'paused')
       OR (status = 'failed' AND next_retry_at IS NOT NULL));

-- name: insert_event
INSERT INTO job_events (job_id, from_status, to_status, stage, message, worker_id)
VALUES (:job_id, :from_status, :to_status, :stage, :message, :worker_id);

-- name: get_job
SELECT * FROM background_jobs WHERE id = :id;

-- name: lock_job
SELECT * FROM background_jobs WHERE id = :id;

-- name: owned_job
-- The fence (SqlJobStore.fence): the job is still this worker's (the transaction holds
-- the database's write lock, so no takeover can come between).
SELECT 1 AS ok FROM background_jobs
WHERE id = :id AND worker_id = :worker_id AND status = 'processing';

-- name: count_jobs
SELECT status, job_type, count(*) AS n FROM background_jobs
WHERE (:user_id IS NULL OR user_id = :user_id)
GROUP BY status, job_type;

-- name: list_events
SELECT * FROM job_events WHERE job_id = :id ORDER BY id;

-- name: claim_candidates
SELECT id, status, worker_id FROM (
    SELECT * FROM (
        SELECT id, status, priority, created_at, worker_id FROM background_jobs
        WHERE status = 'pending' AND run_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
          AND (:types IS NULL OR job_type IN (SELECT value FROM json_each(:types)))
          AND NOT EXISTS (SELECT 1 FROM queue_controls q
                          WHERE q.paused AND q.job_type IN ('*', background_jobs.job_type))
        ORDER BY priority DESC, created_at LIMIT :limit
    )
    UNION ALL
    SELECT * FROM (
        SELECT id, status, priority, created_at, worker_id FROM background_jobs
        WHERE status = 'processing' AND lease_expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
          AND takeovers < :max_takeovers  -- a crash loop is failed by the reaper instead
          AND (:types IS NULL OR job_type IN (SELECT value FROM json_each(:types)))
          AND NOT EXISTS (SELECT 1 FROM queue_controls q
                          WHERE q.paused AND q.job_type IN ('*', background_jobs.job_type))
        ORDER BY priority DESC, created_at LIMIT :limit
    )
)
ORDER BY priority DESC, created_at LIMIT :limit;

-- name: claim_update
UPDATE background_jobs
SET status = 'processing',
    worker_id = :worker_id,
    -- a new attempt: the first run, a retry or a takeover; not a resume or a release
    attempt = attempt + CASE WHEN attempt = 0 OR status = 'processing' OR claim_reason IS NULL
                                  OR claim_reason IN ('retry', 'takeover')
                             THEN 1 ELSE 0 END,
    claim_reason = CASE WHEN status = 'processing' THEN 'takeover' ELSE claim_reason END,
    takeovers = takeovers + CASE WHEN status = 'processing' THEN 1 ELSE 0 END,
    started_at = COALESCE(started_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || :lease || ' seconds'),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id IN (SELECT value FROM json_each(:ids))
RETURNING *;

-- name: touch_worker
UPDATE workers SET last_seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = :worker_id;

-- name: heartbeat
-- Only the jobs the worker names (those it runs or holds now): a job it gave up on, or
-- could not record the end of, must not keep a live lease because the worker lives on.
UPDATE background_jobs
SET heartbeat_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    lease_expires_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || :lease || ' seconds')
WHERE id IN (SELECT value FROM json_each(:ids)) AND worker_id = :worker_id
  AND status = 'processing'
RETURNING id, pause_requested, cancel_requested;

-- name: update_progress
UPDATE background_jobs SET progress = :progress, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id AND worker_id = :worker_id AND status = 'processing'
RETURNING pause_requested, cancel_requested;

-- name: record_checkpoint
UPDATE background_jobs
SET progress = :progress, last_checkpoint_path = :path, last_checkpoint_stage = :stage,
    checkpoint_hash = :hash, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id AND worker_id = :worker_id AND status = 'processing'
RETURNING pause_requested, cancel_requested;

-- name: complete_job
UPDATE background_jobs
SET status = 'completed', output_data = :output,
    completed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    lease_expires_at = NULL, next_retry_at = NULL, pause_requested = 0, cancel_requested = 0,
    last_checkpoint_path = NULL, last_checkpoint_stage = NULL, checkpoint_hash = NULL,
    progress = json_set(json_remove(progress, '$.checkpoint'), '$.percent', 100)
WHERE id = :id AND status = 'processing' AND worker_id = :worker_id
RETURNING id, progress ->> 'stage' AS stage;

-- name: set_failed
UPDATE background_jobs
SET status = 'failed', error_type = :error_type, last_error = :last_error,
    error_message = :error_message, retry_count = retry_count + :retry_increment,
    next_retry_at = CASE WHEN :retry_delay IS NULL THEN NULL
        ELSE strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || :retry_delay || ' seconds') END,
    completed_at = CASE WHEN :retry_delay IS NULL
        THEN strftime('%Y-%m-%dT%H:%M:%fZ', 'now') ELSE NULL END,
    lease_expires_at = NULL, pause_requested = 0, cancel_requested = 0,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id
RETURNING *;

-- name: set_paused
UPDATE background_jobs
SET status = 'paused', paused_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), pause_reason = CASE WHEN pause_requested THEN COALESCE(pause_reason, :reason) ELSE :reason END,
    pause_requested = 0, lease_expires_at = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id
RETURNING *;

-- name: set_cancelled
UPDATE background_jobs
SET status = 'cancelled', completed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    cancel_requested = 0, pause_requested = 0, next_retry_at = NULL, lease_expires_at = NULL,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id
RETURNING *;

-- name: set_released
-- Back to pending; with a delay (the storage or the database failed under the job) it
-- waits that long, counted in infra_retries, which sets the next delay.
UPDATE background_jobs
SET status = 'pending', lease_expires_at = NULL, claim_reason = 'release',
    run_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+' || :delay || ' seconds'),
    infra_retries = infra_retries + CASE WHEN :delay > 0 THEN 1 ELSE 0 END,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id
RETURNING *;

-- name: crash_loops
-- Jobs whose lease ran out again after max_takeovers takeovers: every worker that ran
-- them died. The reaper fails them (permanent) instead of handing them on.
SELECT * FROM background_jobs
WHERE status = 'processing' AND lease_expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
  AND takeovers >= :max_takeovers;

-- name: set_resumed
UPDATE background_jobs
SET status = 'pending', takeovers = 0, resumed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    resume_count = resume_count + 1, pause_requested = 0, claim_reason = 'resume',
    run_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    last_checkpoint_path = CASE WHEN :restart THEN NULL ELSE last_checkpoint_path END,
    last_checkpoint_stage = CASE WHEN :restart THEN NULL ELSE last_checkpoint_stage END,
    checkpoint_hash = CASE WHEN :restart THEN NULL ELSE checkpoint_hash END,
    progress = CASE WHEN :restart THEN json_remove(progress, '$.checkpoint') ELSE progress END
WHERE id = :id
RETURNING *;

-- name: set_retried
UPDATE background_jobs
SET status = 'pending', takeovers = 0, next_retry_at = NULL, completed_at = NULL, claim_reason = 'retry',
    run_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    retry_count = CASE WHEN :reset_retries THEN 0 ELSE retry_count END,
    error_type = NULL, error_message = NULL, cancel_requested = 0, pause_requested = 0,
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    last_checkpoint_path = CASE WHEN :restart THEN NULL ELSE last_checkpoint_path END,
    last_checkpoint_stage = CASE WHEN :restart THEN NULL ELSE last_checkpoint_stage END,
    checkpoint_hash = CASE WHEN :restart THEN NULL ELSE checkpoint_hash END,
    progress = CASE WHEN :restart THEN json_remove(progress, '$.checkpoint') ELSE progress END
WHERE id = :id
RETURNING *;

-- name: clear_checkpoint
UPDATE background_jobs
SET last_checkpoint_path = NULL, last_checkpoint_stage = NULL, checkpoint_hash = NULL,
    progress = json_remove(progress, '$.checkpoint'),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id
RETURNING *;

-- name: set_control
UPDATE background_jobs
SET pause_requested = :pause_requested, cancel_requested = :cancel_requested,
    pause_reason = COALESCE(:reason, pause_reason),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id
RETURNING *;

-- name: delete_job
DELETE FROM background_jobs WHERE id = :id;

-- name: delete_job_events
DELETE FROM job_events WHERE job_id = :id;

-- name: expire_leases
UPDATE background_jobs
SET status = 'pending', lease_expires_at = NULL, claim_reason = 'takeover',
    takeovers = takeovers + 1, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE status = 'processing' AND lease_expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
  AND takeovers < :max_takeovers  -- crash loops: see crash_loops
RETURNING id, progress ->> 'stage' AS stage, worker_id;

-- name: promote_retries
UPDATE background_jobs
SET status = 'pending', next_retry_at = NULL, claim_reason = 'retry', run_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE status = 'failed' AND next_retry_at IS NOT NULL
  AND next_retry_at <= COALESCE(:as_of, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
RETURNING id, progress ->> 'stage' AS stage, retry_count, max_retries;

-- name: insert_worker
INSERT INTO workers (id, host, pid, concurrency, job_types)
VALUES (:id, :host, :pid, :concurrency, :job_types);

-- name: stop_worker
UPDATE workers SET stopped_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
    last_seen_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
WHERE id = :id;

-- name: list_workers
SELECT * FROM workers
WHERE stopped_at IS NULL OR stopped_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
ORDER BY started_at DESC;

-- name: ping
SELECT 1 AS ok;
