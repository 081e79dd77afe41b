-- Named queries for admin actions and queue controls (PostgreSQL).

-- name: delete_jobs
-- Delete jobs with their timelines and logs in one statement, leaving one tombstone event each.
WITH gone AS (
    DELETE FROM background_jobs
    WHERE id = ANY(%(ids)s::uuid[])
      AND (%(user_id)s::text IS NULL OR user_id = %(user_id)s)
    RETURNING *
), old_events AS (
    DELETE FROM job_events WHERE job_id IN (SELECT id FROM gone)
), old_logs AS (
    DELETE FROM job_logs WHERE job_id IN (SELECT id FROM gone)
), tombstones AS (
    INSERT INTO job_events (job_id, from_status, to_status, stage, message)
    SELECT id, status, NULL, progress->>'stage', %(reason)s FROM gone
)
SELECT * FROM gone;

-- name: existing_job_ids
SELECT id, status FROM background_jobs WHERE id = ANY(%(ids)s::uuid[]);

-- name: set_queue_control
INSERT INTO queue_controls (job_type, paused, reason, updated_at)
VALUES (%(job_type)s, %(paused)s, %(reason)s, now())
ON CONFLICT (job_type) DO UPDATE
SET paused = EXCLUDED.paused, reason = EXCLUDED.reason, updated_at = now();

-- name: list_queue_controls
SELECT * FROM queue_controls ORDER BY job_type;

-- name: changed_jobs
SELECT * FROM background_jobs
WHERE updated_at > %(since)s OR (status = 'processing' AND heartbeat_at > %(since)s)
ORDER BY updated_at
LIMIT 1000;

-- name: events_after
SELECT * FROM job_events WHERE id > %(after)s ORDER BY id LIMIT 1000;

-- name: last_event_id
SELECT COALESCE(max(id), 0) AS id, now() AS now FROM job_events;
