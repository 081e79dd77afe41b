-- Jobs by the entity they work on (SQLite).

-- name: latest_job_per_entity
-- The newest job of each of :entity_ids (a JSON list): what a page of documents shows.
-- The window runs over row ids only; the rows themselves are read once, for the winners.
SELECT j.* FROM background_jobs j
WHERE j.rowid IN (
    SELECT r FROM (
        SELECT j.rowid AS r, row_number() OVER (
            PARTITION BY j.entity_id ORDER BY j.created_at DESC, j.id DESC
        ) AS newest
        FROM background_jobs j
        WHERE j.entity_type = :entity_type
          AND j.entity_id IN (SELECT value FROM json_each(:entity_ids))
          AND (:user_id IS NULL OR j.user_id = :user_id)
    ) WHERE newest = 1
);
