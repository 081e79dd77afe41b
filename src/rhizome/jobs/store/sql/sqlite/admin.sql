-- Named queries for admin actions and queue controls (SQLite).

-- name: select_jobs_by_ids
SELECT * FROM background_jobs
WHERE id IN (SELECT value FROM json_each(:ids))
  AND (:user_id IS NULL OR user_id = :user_id);

-- name: delete_jobs_by_ids
DELETE FROM background_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: delete_events_by_job_ids
DELETE FROM job_events WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: existing_job_ids
SELECT id, status FROM background_jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: set_queue_control
INSERT INTO queue_controls (job_type, paused, reason, updated_at)
VALUES (:job_type, :paused, :reason, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (job_type) DO UPDATE
SET paused = excluded.paused, reason = excluded.reason, updated_at = excluded.updated_at;

-- name: list_queue_controls
SELECT * FROM queue_controls ORDER BY job_type;

-- name: changed_jobs
SELECT * FROM background_jobs
WHERE updated_at > :since OR (status = 'processing' AND heartbeat_at > :since)
ORDER BY updated_at
LIMIT 1000;

-- name: events_after
SELECT * FROM job_events WHERE id > :after ORDER BY id LIMIT 1000;

-- name: last_event_id
SELECT COALESCE(max(id), 0) AS id, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') AS now FROM job_events;
