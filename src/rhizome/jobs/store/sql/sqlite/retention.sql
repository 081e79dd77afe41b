-- Retention (RHIZOME_JOB_RETENTION_DAYS): finished jobs older than the cutoff go, with
-- their timeline and log lines; then the timeline lines of jobs already gone (tombstones)
-- older than the cutoff. In batches (LIMIT), oldest first, through the updated_at index.

-- name: retention_candidates
SELECT * FROM background_jobs
WHERE updated_at < :cutoff
  AND status IN ('completed', 'cancelled', 'failed')
  AND (status <> 'failed' OR next_retry_at IS NULL)
ORDER BY updated_at
LIMIT :limit;

-- name: retention_delete_events
DELETE FROM job_events WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: retention_delete_logs
DELETE FROM job_logs WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: retention_delete_jobs
DELETE FROM background_jobs
WHERE id IN (SELECT value FROM json_each(:ids))
  AND updated_at < :cutoff
  AND status IN ('completed', 'cancelled', 'failed')
  AND (status <> 'failed' OR next_retry_at IS NULL)
RETURNING id;

-- name: retention_delete_orphan_events
DELETE FROM job_events WHERE id IN (
    SELECT e.id FROM job_events e
    WHERE e.at < :cutoff
      AND NOT EXISTS (SELECT 1 FROM background_jobs j WHERE j.id = e.job_id)
    LIMIT :limit
);
