-- The operator's view (PostgreSQL): a job's own log, lifetime metrics written by the
-- workers, and the dashboards' read models over job_events (status changes and "stage X
-- started" events).

-- fragment: stage_started
-- A timeline event that says a stage started (JobContext.stage writes it).
(e.to_status IS NULL AND e.stage IS NOT NULL AND e.message LIKE 'stage %% started')

-- fragment: dash_jobs
-- Which jobs a dashboard covers (the user's; hidden types left out).
(%(user_id)s::text IS NULL OR j.user_id = %(user_id)s)
AND (%(exclude_types)s::text[] IS NULL OR j.job_type <> ALL(%(exclude_types)s::text[]))

-- name: insert_job_log
INSERT INTO job_logs (job_id, at, level, logger, message, stage, worker_id, attempt)
VALUES (%(job_id)s, %(at)s, %(level)s, %(logger)s, %(message)s, %(stage)s, %(worker_id)s,
        %(attempt)s);

-- name: trim_job_logs
-- Keep the newest %(keep)s lines of a job.
DELETE FROM job_logs
WHERE job_id = %(job_id)s
  AND id <= (SELECT id FROM job_logs WHERE job_id = %(job_id)s
             ORDER BY id DESC LIMIT 1 OFFSET %(keep)s);

-- name: job_logs_after
SELECT * FROM job_logs WHERE job_id = %(job_id)s AND id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: job_log_tail
SELECT * FROM (
    SELECT * FROM job_logs WHERE job_id = %(job_id)s ORDER BY id DESC LIMIT %(limit)s
) t ORDER BY id;

-- name: logs_after
SELECT * FROM job_logs WHERE id > %(after)s ORDER BY id LIMIT 1000;

-- name: last_log_id
SELECT COALESCE(max(id), 0) AS id FROM job_logs;

-- name: delete_job_logs
DELETE FROM job_logs WHERE job_id = %(id)s;

-- name: add_metric
INSERT INTO job_metrics (worker_id, metric, job_type, label, value, updated_at)
VALUES (%(worker_id)s, %(metric)s, %(job_type)s, %(label)s, %(value)s, now())
ON CONFLICT (worker_id, metric, job_type, label) DO UPDATE
SET value = job_metrics.value + EXCLUDED.value, updated_at = EXCLUDED.updated_at;

-- name: fold_worker_metrics
-- A stopped worker's series are added to worker_id '*' (the retired workers).
INSERT INTO job_metrics (worker_id, metric, job_type, label, value, updated_at)
SELECT '*', metric, job_type, label, value, now()
FROM job_metrics WHERE worker_id = %(worker_id)s
ON CONFLICT (worker_id, metric, job_type, label) DO UPDATE
SET value = job_metrics.value + EXCLUDED.value, updated_at = EXCLUDED.updated_at;

-- name: delete_worker_metrics
DELETE FROM job_metrics WHERE worker_id = %(worker_id)s;

-- name: metric_totals
SELECT metric, job_type, label, sum(value) AS value FROM job_metrics
GROUP BY metric, job_type, label;

-- name: resolve_job_id
-- Job ids between two bounds (an id prefix padded with 0s and with fs): a range scan of
-- the primary key.
SELECT id FROM background_jobs
WHERE id BETWEEN %(low)s::uuid AND %(high)s::uuid
  AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
ORDER BY id LIMIT 2;

-- name: resolve_job_suffix
-- Job ids ending in a short id (the last 8 to 12 hex digits, random in every id): a scan
-- of the user's jobs (of all jobs without a user); people type these, machines send ids.
SELECT id FROM background_jobs
WHERE right(id::text, length(%(suffix)s)) = %(suffix)s
  AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
LIMIT 2;

-- name: list_jobs_sorted
-- list_jobs in another order (%(sort)s is column_asc or column_desc).
SELECT j.* FROM background_jobs j
WHERE {{job_filter}}
ORDER BY
    CASE WHEN %(sort)s = 'created_asc' THEN j.created_at END ASC,
    CASE WHEN %(sort)s = 'created_desc' THEN j.created_at END DESC,
    CASE WHEN %(sort)s = 'started_asc' THEN j.started_at END ASC NULLS LAST,
    CASE WHEN %(sort)s = 'started_desc' THEN j.started_at END DESC NULLS LAST,
    CASE WHEN %(sort)s = 'duration_asc' THEN coalesce(j.completed_at, now()) - j.started_at END
        ASC NULLS LAST,
    CASE WHEN %(sort)s = 'duration_desc' THEN coalesce(j.completed_at, now()) - j.started_at END
        DESC NULLS LAST,
    CASE WHEN %(sort)s = 'progress_asc'
         THEN coalesce((j.progress ->> 'percent')::float8, 0) END ASC,
    CASE WHEN %(sort)s = 'progress_desc'
         THEN coalesce((j.progress ->> 'percent')::float8, 0) END DESC,
    CASE WHEN %(sort)s = 'type_asc' THEN j.job_type END ASC,
    CASE WHEN %(sort)s = 'type_desc' THEN j.job_type END DESC,
    CASE WHEN %(sort)s = 'status_asc' THEN {{shown_status}} END ASC,
    CASE WHEN %(sort)s = 'status_desc' THEN {{shown_status}} END DESC,
    j.created_at DESC, j.id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: dash_transitions
-- Status changes in the window per time bucket (%(bucket)s seconds), job type and change.
SELECT bucket, job_type, from_status, to_status, count(*) AS n FROM (
    SELECT (floor(extract(epoch FROM e.at) / %(bucket)s) * %(bucket)s)::bigint AS bucket,
           j.job_type, e.from_status, e.to_status
    FROM job_events e JOIN background_jobs j ON j.id = e.job_id
    WHERE e.at >= %(since)s AND e.to_status IS NOT NULL AND {{dash_jobs}}
) t
GROUP BY bucket, job_type, from_status, to_status;

-- name: dash_claims
-- Claim latency of the claims in the window: from the moment the job was due (it became
-- pending, or its run_at if later) to its claim. Newest first.
WITH s AS (
    SELECT e.job_id, e.at, e.from_status, e.to_status,
           LAG(e.at) OVER (PARTITION BY e.job_id ORDER BY e.id) AS prev_at
    FROM job_events e
    WHERE e.to_status IS NOT NULL
      AND e.job_id IN (SELECT job_id FROM job_events
                       WHERE at >= %(since)s AND to_status = 'processing'
                         AND from_status = 'pending')
)
SELECT s.at, j.job_type,
       greatest(0.0, extract(epoch FROM s.at - (
           CASE WHEN j.run_at > s.prev_at AND j.run_at <= s.at THEN j.run_at ELSE s.prev_at END
       )))::float8 AS seconds
FROM s JOIN background_jobs j ON j.id = s.job_id
WHERE s.at >= %(since)s AND s.from_status = 'pending' AND s.to_status = 'processing'
  AND s.prev_at IS NOT NULL AND {{dash_jobs}}
ORDER BY s.at DESC
LIMIT %(limit)s;

-- name: dash_runs
-- Jobs completed in the window with their run time (the sum of their processing spells).
WITH done AS (
    SELECT job_id, at FROM job_events WHERE at >= %(since)s AND to_status = 'completed'
), s AS (
    SELECT e.job_id, e.at, e.from_status,
           LAG(e.at) OVER (PARTITION BY e.job_id ORDER BY e.id) AS prev_at
    FROM job_events e
    WHERE e.to_status IS NOT NULL AND e.job_id IN (SELECT job_id FROM done)
), r AS (
    SELECT job_id,
           sum(CASE WHEN from_status = 'processing' AND prev_at IS NOT NULL
                    THEN extract(epoch FROM at - prev_at) ELSE 0 END)::float8 AS seconds
    FROM s GROUP BY job_id
)
SELECT d.at, j.job_type, r.seconds
FROM done d JOIN r ON r.job_id = d.job_id JOIN background_jobs j ON j.id = d.job_id
WHERE {{dash_jobs}}
ORDER BY d.at DESC
LIMIT %(limit)s;

-- name: dash_stage_times
-- Time each job spent in each stage (the sum of its spells in it), for stage spells that
-- ended in the window. A spell runs from "stage X started" to the next stage start or
-- status change.
WITH marks AS (
    SELECT e.job_id, e.at, e.stage,
           CASE WHEN {{stage_started}} THEN 1 ELSE 0 END AS starts,
           LEAD(e.at) OVER (PARTITION BY e.job_id ORDER BY e.id) AS next_at
    FROM job_events e
    WHERE (e.to_status IS NOT NULL OR {{stage_started}})
      AND e.job_id IN (SELECT job_id FROM job_events WHERE at >= %(since)s)
), spells AS (
    SELECT job_id, stage, next_at, extract(epoch FROM next_at - at)::float8 AS seconds
    FROM marks WHERE starts = 1 AND next_at IS NOT NULL
)
SELECT j.job_type, sp.stage, sum(sp.seconds) AS seconds, max(sp.next_at) AS ended_at
FROM spells sp JOIN background_jobs j ON j.id = sp.job_id
WHERE {{dash_jobs}}
GROUP BY sp.job_id, j.job_type, sp.stage
HAVING max(sp.next_at) >= %(since)s
ORDER BY ended_at DESC
LIMIT %(limit)s;

-- name: worker_running_jobs
SELECT worker_id, id, job_type, user_id FROM background_jobs
WHERE status = 'processing' AND worker_id IS NOT NULL
ORDER BY started_at;

-- name: worker_finished_counts
SELECT worker_id, to_status, count(*) AS n FROM job_events
WHERE at >= %(since)s AND worker_id IS NOT NULL AND to_status IN ('completed', 'failed')
GROUP BY worker_id, to_status;

-- name: worker_taken_over
-- Jobs taken from a worker whose lease ran out (by the reaper, or by a claim).
SELECT DISTINCT e.job_id FROM job_events e
WHERE (e.worker_id = %(worker_id)s AND e.message LIKE 'lease expired:%%')
   OR e.message LIKE %(claim_pattern)s ESCAPE '\'
LIMIT 100;
