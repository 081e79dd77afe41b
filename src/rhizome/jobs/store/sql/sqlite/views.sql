-- Read models of the job store (SQLite): the filtered job search, facet counts for filter
-- badges and the rows behind the Prometheus metrics. The shown status (pausing,
-- cancelling, retrying) is defined once, in the fragment below; it mirrors
-- rhizome.jobs.model.shown_status (tests/integration/test_status_filters.py compares
-- them on real rows).

-- fragment: shown_status
(CASE
    WHEN j.status = 'processing' AND j.cancel_requested THEN 'cancelling'
    WHEN j.status = 'processing' AND j.pause_requested THEN 'pausing'
    WHEN j.status = 'failed' AND j.next_retry_at IS NOT NULL THEN 'retrying'
    ELSE j.status
END)

-- fragment: unfinished
-- rhizome.jobs.model.UNFINISHED_SHOWN: not completed, failed (for good) or cancelled.
(j.status IN ('pending', 'processing', 'paused')
 OR (j.status = 'failed' AND j.next_retry_at IS NOT NULL))

-- fragment: job_filter
-- rhizome.jobs.model.JobFilter; lists arrive as JSON, NULL means "any".
(:user_id IS NULL OR j.user_id = :user_id)
AND (:types IS NULL OR j.job_type IN (SELECT value FROM json_each(:types)))
AND (:exclude_types IS NULL
     OR j.job_type NOT IN (SELECT value FROM json_each(:exclude_types)))
AND (:stored IS NULL OR j.status IN (SELECT value FROM json_each(:stored)))
AND (:shown IS NULL OR {{shown_status}} IN (SELECT value FROM json_each(:shown)))
AND (:stage IS NULL OR (j.progress ->> 'stage' = :stage AND {{unfinished}}))
AND (:ids IS NULL OR j.id IN (SELECT value FROM json_each(:ids)))
AND (:entity_type IS NULL OR j.entity_type = :entity_type)
AND (:entity_ids IS NULL OR j.entity_id IN (SELECT value FROM json_each(:entity_ids)))
AND (:pattern IS NULL
     OR (j.id || ' ' || j.job_type || ' ' || coalesce(j.input_data, '') || ' '
         || coalesce(j.progress ->> 'details', '') || ' '
         || coalesce(j.progress ->> 'stage', '') || ' ' || coalesce(j.error_message, '')
         || ' ' || coalesce(j.entity_id, '') || ' ' || coalesce(j.worker_id, ''))
        LIKE :pattern ESCAPE '\'
     OR j.entity_id IN (SELECT value FROM json_each(:q_entity_ids)))

-- name: list_jobs
SELECT j.* FROM background_jobs j
WHERE {{job_filter}}
ORDER BY j.created_at DESC, j.id DESC
LIMIT :limit OFFSET :offset;

-- name: filtered_job_ids
SELECT j.id FROM background_jobs j
WHERE {{job_filter}}
ORDER BY j.created_at, j.id
LIMIT coalesce(:limit, -1);

-- name: facet_counts
-- Unfinished jobs are counted live (few, through background_jobs_unfinished_idx); finished
-- ones come from job_counts (kept by triggers, migration 0007) when the filter names no
-- more than the user and the hidden types, and are counted live under any other filter.
-- Finished jobs have no stage here: a stage is shown (and filtered on) only for
-- unfinished ones (rhizome.jobs.model.Facets).
SELECT job_type, shown, stage, sum(n) AS n FROM (
    SELECT j.job_type, {{shown_status}} AS shown, j.progress ->> 'stage' AS stage,
           count(*) AS n
    FROM background_jobs j
    WHERE {{unfinished}} AND {{job_filter}}
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT j.job_type, j.status, NULL, j.n
    FROM job_counts j
    WHERE :ids IS NULL AND :entity_type IS NULL AND :entity_ids IS NULL AND :pattern IS NULL
      AND j.n > 0
      AND (:user_id IS NULL OR j.user_id = :user_id)
      AND (:exclude_types IS NULL
           OR j.job_type NOT IN (SELECT value FROM json_each(:exclude_types)))
    UNION ALL
    SELECT j.job_type, j.status, NULL, count(*)
    FROM background_jobs j
    WHERE (:ids IS NOT NULL OR :entity_type IS NOT NULL OR :entity_ids IS NOT NULL
           OR :pattern IS NOT NULL)
      AND (j.status IN ('completed', 'cancelled')
           OR (j.status = 'failed' AND j.next_retry_at IS NULL))
      AND {{job_filter}}
    GROUP BY 1, 2
)
GROUP BY 1, 2, 3;

-- name: metrics_started
SELECT job_type, created_at, run_at, started_at, attempt FROM background_jobs
WHERE started_at >= :since
ORDER BY started_at DESC LIMIT :limit;

-- name: metrics_finished
SELECT job_type, status, started_at, completed_at FROM background_jobs
WHERE completed_at >= :since AND started_at IS NOT NULL
ORDER BY completed_at DESC LIMIT :limit;

-- name: metrics_retries
SELECT j.job_type, sum(j.retry_count) AS retries,
       sum(CASE WHEN {{shown_status}} = 'retrying' THEN 1 ELSE 0 END) AS scheduled
FROM background_jobs j
GROUP BY j.job_type;

-- name: metrics_heartbeats
SELECT job_type, worker_id, heartbeat_at FROM background_jobs
WHERE status = 'processing' AND heartbeat_at IS NOT NULL;
