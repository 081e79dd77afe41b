-- A failed job whose automatic retry is pending (next_retry_at set) is unfinished: it holds
-- its dedupe key, so enqueueing the key again returns it, and promoting it back to pending
-- can never collide with a newer job of the same key (DESIGN §3: at most one unfinished
-- job per key).

-- Rows that would collide under the new index keep their failure but lose the automatic
-- retry (another unfinished job of the same key does the work; the newest retry wins).
UPDATE background_jobs
SET next_retry_at = NULL,
    completed_at = COALESCE(completed_at, now())
WHERE status = 'failed' AND next_retry_at IS NOT NULL AND dedupe_key IS NOT NULL
  AND EXISTS (
    SELECT 1 FROM background_jobs o
    WHERE o.dedupe_key = background_jobs.dedupe_key AND o.id <> background_jobs.id
      AND (o.status IN ('pending', 'processing', 'paused')
           OR (o.status = 'failed' AND o.next_retry_at IS NOT NULL
               AND (o.created_at, o.id) > (background_jobs.created_at, background_jobs.id)))
  );

DROP INDEX background_jobs_dedupe_idx;
CREATE UNIQUE INDEX background_jobs_dedupe_idx ON background_jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL
      AND (status IN ('pending', 'processing', 'paused')
           OR (status = 'failed' AND next_retry_at IS NOT NULL));
