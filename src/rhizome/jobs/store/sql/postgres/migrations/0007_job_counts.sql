-- The Jobs panel at any size of history (issue 18): counts that do not read every job.
--
-- job_counts: finished jobs (completed, cancelled, failed for good: no retry due) per
-- user, job type and status, kept exact by the triggers below on every insert, status
-- change, delete (retention, admin clear, document deletes) and truncate. They run once per
-- statement over its transition tables, so a batch of completions moves a count once
-- (one row written, not one per job). The facet counts (views.sql) add the unfinished
-- jobs, counted live through background_jobs_unfinished_idx, which also serves the stage
-- filter (a stage is shown only for unfinished jobs).
CREATE TABLE job_counts (
    user_id  TEXT NOT NULL,
    job_type TEXT NOT NULL,
    status   TEXT NOT NULL,
    n        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, job_type, status)
);

INSERT INTO job_counts (user_id, job_type, status, n)
SELECT user_id, job_type, status, count(*) FROM background_jobs
WHERE status IN ('completed', 'cancelled') OR (status = 'failed' AND next_retry_at IS NULL)
GROUP BY user_id, job_type, status;

-- Counts move in key order, so that two transactions moving the same counts take their
-- row locks in the same order (no deadlock between, say, two workers' completions).
CREATE FUNCTION rhizome_job_counts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM job_counts;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO job_counts AS c (user_id, job_type, status, n)
        SELECT user_id, job_type, status, count(*) FROM new_jobs
        WHERE status IN ('completed', 'cancelled')
              OR (status = 'failed' AND next_retry_at IS NULL)
        GROUP BY user_id, job_type, status
        ORDER BY user_id, job_type, status
        ON CONFLICT (user_id, job_type, status) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO job_counts AS c (user_id, job_type, status, n)
        SELECT user_id, job_type, status, -count(*) FROM old_jobs
        WHERE status IN ('completed', 'cancelled')
              OR (status = 'failed' AND next_retry_at IS NULL)
        GROUP BY user_id, job_type, status
        ORDER BY user_id, job_type, status
        ON CONFLICT (user_id, job_type, status) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO job_counts AS c (user_id, job_type, status, n)
        SELECT user_id, job_type, status, sum(d) FROM (
            SELECT user_id, job_type, status, -1 AS d FROM old_jobs
            WHERE status IN ('completed', 'cancelled')
                  OR (status = 'failed' AND next_retry_at IS NULL)
            UNION ALL
            SELECT user_id, job_type, status, 1 FROM new_jobs
            WHERE status IN ('completed', 'cancelled')
                  OR (status = 'failed' AND next_retry_at IS NULL)
        ) AS moved
        GROUP BY user_id, job_type, status
        HAVING sum(d) <> 0
        ORDER BY user_id, job_type, status
        ON CONFLICT (user_id, job_type, status) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER background_jobs_count_insert
    AFTER INSERT ON background_jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_job_counts();
CREATE TRIGGER background_jobs_count_update
    AFTER UPDATE ON background_jobs REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_job_counts();
CREATE TRIGGER background_jobs_count_delete
    AFTER DELETE ON background_jobs REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_job_counts();
CREATE TRIGGER background_jobs_count_truncate
    AFTER TRUNCATE ON background_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION rhizome_job_counts();

CREATE INDEX background_jobs_unfinished_idx ON background_jobs (user_id, created_at DESC)
WHERE status IN ('pending', 'processing', 'paused')
      OR (status = 'failed' AND next_retry_at IS NOT NULL);
