-- Read models of the job store (PostgreSQL): the filtered job search, facet counts for
-- filter badges and the rows behind the Prometheus metrics. The shown status (pausing,
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
-- rhizome.jobs.model.JobFilter; NULL means "any".
(%(user_id)s::text IS NULL OR j.user_id = %(user_id)s)
AND (%(types)s::text[] IS NULL OR j.job_type = ANY(%(types)s::text[]))
AND (%(exclude_types)s::text[] IS NULL OR j.job_type <> ALL(%(exclude_types)s::text[]))
AND (%(stored)s::text[] IS NULL OR j.status = ANY(%(stored)s::text[]))
AND (%(shown)s::text[] IS NULL OR {{shown_status}} = ANY(%(shown)s::text[]))
AND (%(stage)s::text IS NULL OR (j.progress ->> 'stage' = %(stage)s AND {{unfinished}}))
AND (%(ids)s::uuid[] IS NULL OR j.id = ANY(%(ids)s::uuid[]))
AND (%(entity_type)s::text IS NULL OR j.entity_type = %(entity_type)s)
AND (%(entity_ids)s::text[] IS NULL OR j.entity_id = ANY(%(entity_ids)s::text[]))
AND (%(pattern)s::text IS NULL
     OR concat_ws(' ', j.id::text, j.job_type, j.input_data::text, j.progress ->> 'details',
                  j.progress ->> 'stage', j.error_message, j.entity_id, j.worker_id)
        ILIKE %(pattern)s ESCAPE '\'
     OR j.entity_id = ANY(%(q_entity_ids)s::text[]))

-- name: list_jobs
SELECT j.* FROM background_jobs j
WHERE {{job_filter}}
ORDER BY j.created_at DESC, j.id DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: filtered_job_ids
SELECT j.id FROM background_jobs j
WHERE {{job_filter}}
ORDER BY j.created_at, j.id
LIMIT %(limit)s;

-- name: facet_counts
-- Unfinished jobs are counted live (few, through background_jobs_unfinished_idx); finished
-- ones come from job_counts (kept by triggers, migration 0007) when the filter names no
-- more than the user and the hidden types, and are counted live under any other filter.
-- Finished jobs have no stage here: a stage is shown (and filtered on) only for
-- unfinished ones (rhizome.jobs.model.Facets).
SELECT job_type, shown, stage, sum(n)::bigint AS n FROM (
    SELECT j.job_type, {{shown_status}} AS shown, j.progress ->> 'stage' AS stage,
           count(*) AS n
    FROM background_jobs j
    WHERE {{unfinished}} AND {{job_filter}}
    GROUP BY 1, 2, 3
    UNION ALL
    SELECT j.job_type, j.status, NULL, j.n
    FROM job_counts j
    WHERE %(ids)s::uuid[] IS NULL AND %(entity_type)s::text IS NULL
      AND %(entity_ids)s::text[] IS NULL AND %(pattern)s::text IS NULL
      AND j.n > 0
      AND (%(user_id)s::text IS NULL OR j.user_id = %(user_id)s)
      AND (%(exclude_types)s::text[] IS NULL OR j.job_type <> ALL(%(exclude_types)s::text[]))
    UNION ALL
    SELECT j.job_type, j.status, NULL, count(*)
    FROM background_jobs j
    WHERE (%(ids)s::uuid[] IS NOT NULL OR %(entity_type)s::text IS NOT NULL
           OR %(entity_ids)s::text[] IS NOT NULL OR %(pattern)s::text IS NOT NULL)
      AND (j.status IN ('completed', 'cancelled')
           OR (j.status = 'failed' AND j.next_retry_at IS NULL))
      AND {{job_filter}}
    GROUP BY 1, 2
) AS counted
GROUP BY 1, 2, 3;

-- name: metrics_started
SELECT job_type, created_at, run_at, started_at, attempt FROM background_jobs
WHERE started_at >= %(since)s
ORDER BY started_at DESC LIMIT %(limit)s;

-- name: metrics_finished
SELECT job_type, status, started_at, completed_at FROM background_jobs
WHERE completed_at >= %(since)s AND started_at IS NOT NULL
ORDER BY completed_at DESC LIMIT %(limit)s;

-- name: metrics_retries
SELECT j.job_type, sum(j.retry_count) AS retries,
       sum(CASE WHEN {{shown_status}} = 'retrying' THEN 1 ELSE 0 END) AS scheduled
FROM background_jobs j
GROUP BY j.job_type;

-- name: metrics_heartbeats
SELECT job_type, worker_id, heartbeat_at FROM background_jobs
WHERE status = 'processing' AND heartbeat_at IS NOT NULL;
