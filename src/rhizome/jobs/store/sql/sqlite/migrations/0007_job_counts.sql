-- The Jobs panel at any size of history (issue 18): counts that do not read every job.
--
-- job_counts: finished jobs (completed, cancelled, failed for good: no retry due) per
-- user, job type and status, kept exact by the triggers below on every insert, status
-- change and delete (retention, admin clear, document deletes). The facet counts
-- (views.sql) add the unfinished jobs, counted live through
-- background_jobs_unfinished_idx, which also serves the stage filter (a stage is shown
-- only for unfinished jobs). Its predicate is the `unfinished` fragment of views.sql,
-- word for word, so that SQLite sees the index fits those queries.
CREATE TABLE job_counts (
    user_id  TEXT NOT NULL,
    job_type TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, job_type, status)
) WITHOUT ROWID;

INSERT INTO job_counts (user_id, job_type, status, n)
SELECT user_id, job_type, status, count(*) FROM background_jobs
WHERE status IN ('completed', 'cancelled') OR (status = 'failed' AND next_retry_at IS NULL)
GROUP BY user_id, job_type, status;

CREATE TRIGGER job_counts_insert AFTER INSERT ON background_jobs
WHEN NEW.status IN ('completed', 'cancelled')
     OR (NEW.status = 'failed' AND NEW.next_retry_at IS NULL)
BEGIN
    INSERT INTO job_counts (user_id, job_type, status, n)
    VALUES (NEW.user_id, NEW.job_type, NEW.status, 1)
    ON CONFLICT (user_id, job_type, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER job_counts_delete AFTER DELETE ON background_jobs
WHEN OLD.status IN ('completed', 'cancelled')
     OR (OLD.status = 'failed' AND OLD.next_retry_at IS NULL)
BEGIN
    UPDATE job_counts SET n = n - 1
    WHERE user_id = OLD.user_id AND job_type = OLD.job_type AND status = OLD.status;
END;

-- An update moves a job out of its old count and into its new one, unless both are the
-- same count (a finished job's output or progress written again).
CREATE TRIGGER job_counts_update_old
AFTER UPDATE OF status, next_retry_at, user_id, job_type ON background_jobs
WHEN (OLD.status IN ('completed', 'cancelled')
      OR (OLD.status = 'failed' AND OLD.next_retry_at IS NULL))
     AND NOT ((NEW.status IN ('completed', 'cancelled')
               OR (NEW.status = 'failed' AND NEW.next_retry_at IS NULL))
              AND NEW.status = OLD.status AND NEW.user_id = OLD.user_id
              AND NEW.job_type = OLD.job_type)
BEGIN
    UPDATE job_counts SET n = n - 1
    WHERE user_id = OLD.user_id AND job_type = OLD.job_type AND status = OLD.status;
END;

CREATE TRIGGER job_counts_update_new
AFTER UPDATE OF status, next_retry_at, user_id, job_type ON background_jobs
WHEN (NEW.status IN ('completed', 'cancelled')
      OR (NEW.status = 'failed' AND NEW.next_retry_at IS NULL))
     AND NOT ((OLD.status IN ('completed', 'cancelled')
               OR (OLD.status = 'failed' AND OLD.next_retry_at IS NULL))
              AND NEW.status = OLD.status AND NEW.user_id = OLD.user_id
              AND NEW.job_type = OLD.job_type)
BEGIN
    INSERT INTO job_counts (user_id, job_type, status, n)
    VALUES (NEW.user_id, NEW.job_type, NEW.status, 1)
    ON CONFLICT (user_id, job_type, status) DO UPDATE SET n = n + 1;
END;

CREATE INDEX background_jobs_unfinished_idx ON background_jobs (user_id, created_at DESC)
WHERE status IN ('pending', 'processing', 'paused')
      OR (status = 'failed' AND next_retry_at IS NOT NULL);
